"""Independent float64 references of one gradient update per agent, written from the maths in
docs/ (not from agents/), so the tests in tests/test_reference_*.py compare two separate
implementations. Run them inside `with jax.enable_x64(True):`."""
