"""Scores, statistics, figures and a report from published result files and our run store.

load (reading, names, cleaning) -> scores (score at a frame budget, incomplete runs, groups)
-> matrix (the (runs, tasks) contract) -> aggregates / bootstrap (statistics, seeded CIs)
-> figures, report; store holds the run-store contract; make_figures is the command.
"""
