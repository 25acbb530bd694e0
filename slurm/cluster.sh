#!/usr/bin/env bash
# simbabench: a real one-node SLURM cluster on this machine, for tests and local runs.
#
#   bash slurm/cluster.sh up       install what is missing, configure, start, health-check
#   bash slurm/cluster.sh down     cancel all jobs, stop the daemons this script started
#   bash slurm/cluster.sh status   what runs, sinfo, squeue (exit 3 if slurmctld is not answering)
#   bash slurm/cluster.sh health   health check only (exit 1 with a reason when it fails)
#   bash slurm/cluster.sh reset    down, then delete the state directory
#
# What `up` builds (Debian 12 packages: Slurm 22.05, munge, MariaDB; no systemd needed):
#   munged -> mariadbd (private datadir, 127.0.0.1 only) -> slurmdbd -> slurmctld -> slurmd
#   one node "localhost" (NodeAddr 127.0.0.1, hostname-independent) in two partitions:
#     cpu  (Default)   and   gpu  (same node, fake GPU GRES: device nodes, no CUDA)
#   Accounting (slurmdbd + MariaDB) is on by default because submitit polls `sacct`; without it
#   job.state stays UNKNOWN and result() after a cancel blocks forever.
#
# `up` is idempotent: packages are installed only when missing, config files are rewritten only
# when their content changes (and then the affected daemons are restarted), each daemon is
# started only when it does not already run, a drained/down node is resumed, and it ends with a
# health check (a batch job with an srun step on each partition, GPU visible on `gpu`, and the
# job seen COMPLETED by sacct). Exit status is non-zero with an "ERROR:" line when anything fails.
# `down` stops only processes whose PIDs this script recorded (checking /proc/PID/comm first).
#
# Knobs (environment variables; defaults in brackets):
#   SIMBABENCH_SLURM_DIR         state, logs, pid files, fake GPU devices [/tmp/simbabench-slurm]
#   SIMBABENCH_SLURM_CPUS        CPUs the node advertises [8]. May exceed the real cores
#                                (SlurmdParameters=config_overrides keeps the node from draining
#                                as "Low CPUs"), so 8 one-CPU jobs run at once on 2 cores.
#   SIMBABENCH_SLURM_MEM_MB      node RealMemory in MB [75% of MemTotal]; bookkeeping only.
#   SIMBABENCH_SLURM_DEFMEM_MB   DefMemPerCPU for jobs without --mem [MEM_MB / CPUS], so that
#                                CPUS one-CPU jobs fit at once.
#   SIMBABENCH_SLURM_GPUS        fake GPUs on the node, 0 = no GRES [2]
#   SIMBABENCH_SLURM_ACCOUNTING  1 = slurmdbd + MariaDB (sacct works), 0 = none [1]
#   SIMBABENCH_SLURM_DB_PORT     TCP port of the private MariaDB on 127.0.0.1 [6820]
#   SIMBABENCH_SLURM_INSTALL     1 = apt-get install missing packages, 0 = fail instead [1]
# Fixed ports: slurmctld 6817, slurmd 6818, slurmdbd 6819. Config goes to /etc/slurm (so that
# sbatch/srun/sacct and submitit need no SLURM_CONF); everything else lives in the state dir.
# Jobs run as the submitting user (root here). Nothing confines CPU/memory (task/none).
set -eEuo pipefail

BASE="${SIMBABENCH_SLURM_DIR:-/tmp/simbabench-slurm}"
CPUS="${SIMBABENCH_SLURM_CPUS:-8}"
MEM_MB="${SIMBABENCH_SLURM_MEM_MB:-$(( $(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo) * 75 / 100 ))}"
DEFMEM_MB="${SIMBABENCH_SLURM_DEFMEM_MB:-auto}"   # auto = MEM_MB / CPUS, after validation
GPUS="${SIMBABENCH_SLURM_GPUS:-2}"
ACCOUNTING="${SIMBABENCH_SLURM_ACCOUNTING:-1}"
DB_PORT="${SIMBABENCH_SLURM_DB_PORT:-6820}"
INSTALL="${SIMBABENCH_SLURM_INSTALL:-1}"

RUN="$BASE/run"      # pid files: slurm daemons write theirs here; munged's/mariadbd's are copied
LOGD="$BASE/log"
DBDIR="$BASE/mysql"  # private MariaDB datadir (owned by mysql)
DBSOCK="$DBDIR/mysqld.sock"
NODE=localhost
CLUSTER=simbabench
DBPASS=simbabench-local   # local-only password of the MariaDB user 'slurm'@'127.0.0.1'
CONF=/etc/slurm
MARK="# written by simbabench slurm/cluster.sh"

T0=$(date +%s%N)
log() {
  local ms=$(( ($(date +%s%N) - T0) / 1000000 ))
  printf '[cluster.sh %3d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2
}
DIED=0
die() { log "ERROR: $*"; DIED=1; exit 1; }
# an unexpected failure (set -e) names the command and line instead of exiting silently
ERR_AT=""
trap 'ERR_AT="line $LINENO: $BASH_COMMAND"' ERR
trap 'rc=$?; if [ $rc -ne 0 ] && [ $DIED = 0 ] && [ -n "$ERR_AT" ]; then log "ERROR: unexpected failure (exit $rc) at $ERR_AT"; fi' EXIT
# die_log MSG LOGFILE: fail and show the end of a daemon's log
die_log() {
  log "ERROR: $1"; DIED=1
  if [ -s "$2" ]; then echo "---- last lines of $2 ----" >&2; tail -n 15 "$2" >&2; fi
  exit 1
}

for v in CPUS MEM_MB GPUS DB_PORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "SIMBABENCH_SLURM_$v must be a non-negative integer, got '${!v}'"
done
[ "$CPUS" -ge 1 ] || die "SIMBABENCH_SLURM_CPUS must be >= 1"
[ "$DEFMEM_MB" = auto ] && DEFMEM_MB=$(( MEM_MB / CPUS ))
[[ "$DEFMEM_MB" =~ ^[0-9]+$ ]] || die "SIMBABENCH_SLURM_DEFMEM_MB must be a non-negative integer, got '$DEFMEM_MB'"
case "$ACCOUNTING" in 0|1) ;; *) die "SIMBABENCH_SLURM_ACCOUNTING must be 0 or 1" ;; esac

# wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds or SECONDS pass
wait_for() {
  local end=$(( $(date +%s%N) + $1 * 1000000000 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.1
  done
}
# is_live PID NAME: PID is a running (not zombie) process whose comm is NAME
is_live() {
  local c="" st=""
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  { read -r c < "/proc/$1/comm"; } 2>/dev/null || return 1
  [ "$c" = "$2" ] || return 1
  { while read -r st; do [[ "$st" == State:* ]] && break; done < "/proc/$1/status"; } 2>/dev/null
  [[ "$st" != State:*Z* ]]
}
# ours NAME: the pid recorded in $RUN/NAME.pid is a live process whose comm is NAME
ours() {
  local p; p=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  is_live "$p" "$1"
}
# pids_named NAME [EXCEPT]: live processes whose comm is NAME, other than EXCEPT and its
# children (slurmd forks short-lived helpers). For detection only, never for killing.
pids_named() {
  local f p c
  for f in /proc/[0-9]*/comm; do
    { read -r c < "$f"; } 2>/dev/null || continue
    [ "$c" = "$1" ] || continue
    p=${f#/proc/}; p=${p%/comm}
    is_live "$p" "$1" || continue
    if [ -n "${2:-}" ]; then
      [ "$p" = "$2" ] && continue
      grep -q "^PPid:[[:space:]]*$2\$" "/proc/$p/status" 2>/dev/null && continue
    fi
    echo "$p"
  done
  return 0
}
# foreign NAME: fail if NAME runs but not as the process we recorded (e.g. another Slurm setup)
foreign() {
  local mine=0 others
  ours "$1" && mine=$(cat "$RUN/$1.pid")
  others=$(pids_named "$1" "$mine" | tr '\n' ' ')
  [ -z "$others" ] || die "$1 already runs (pid $others) but was not started by this script" \
    "with state dir $BASE; stop it first (or point SIMBABENCH_SLURM_DIR at the dir that started it)"
}
# stop NAME...: SIGTERM each recorded process (only if /proc/PID/comm matches), wait, SIGKILL stragglers
stop() {
  local n p pids=() names=() i
  for n in "$@"; do
    if ours "$n"; then
      p=$(cat "$RUN/$n.pid"); kill -TERM "$p" 2>/dev/null || true; pids+=("$p"); names+=("$n")
    fi
    rm -f "$RUN/$n.pid"
  done
  for i in "${!pids[@]}"; do
    p=${pids[$i]}
    wait_for 20 eval "! is_live $p ${names[$i]}" || {
      log "${names[$i]} (pid $p) ignored SIGTERM for 20 s: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; }
    log "stopped ${names[$i]} (pid $p)"
  done
}
munge_ok()  { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_up()   { scontrol ping 2>/dev/null | grep -q 'is UP'; }
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
db_ok()     { mariadb-admin --no-defaults --socket="$DBSOCK" -uroot ping >/dev/null 2>&1; }
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }
node_reason() { scontrol show node "$NODE" 2>/dev/null | grep -o 'Reason=.*' || echo "no reason given"; }

ARGS=("$@")
need_root() {
  [ "$(id -u)" = 0 ] && return
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env bash "$0" "${ARGS[@]}"
  fi
  die "'$1' must run as root (or with passwordless sudo)"
}

# ------------------------------------------------------------------------- 1. packages
install_pkgs() {
  local want=(munge slurmctld slurmd slurm-client) missing=() p made_policy=0
  [ "$ACCOUNTING" = 1 ] && want+=(slurmdbd mariadb-server)
  local ok
  ok=$(dpkg-query -W -f='${Package} ${Status}\n' "${want[@]}" 2>/dev/null | awk '/ ok installed$/{print $1}' || true)
  for p in "${want[@]}"; do
    grep -qx "$p" <<<"$ok" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "packages present (${want[*]})"; return; fi
  [ "$INSTALL" = 1 ] || die "missing packages: ${missing[*]} (SIMBABENCH_SLURM_INSTALL=0)"
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (Debian/Ubuntu only)"
  # Without systemd the postinst scripts would start the daemons through /etc/init.d with the
  # packaged defaults. A policy-rc.d that exits 101 forbids that (keep one that already exists).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  log "apt-get update"
  timeout 300 apt-get update -qq > "$LOGD/apt-update.log" 2>&1 \
    || { log "apt-get update failed (trying the install anyway):"; tail -n 5 "$LOGD/apt-update.log" >&2; }
  log "apt-get install --no-install-recommends ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=120 "${missing[@]}" > "$LOGD/apt-install.log" 2>&1; then
    [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    die_log "apt-get install ${missing[*]} failed" "$LOGD/apt-install.log"
  fi
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
}

# ------------------------------------------------------------------------- 2. munge
start_munge() {
  # munged refuses a key that is not owned by the munge user or is group/other-accessible
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge    # a tmpfs dir systemd would normally create
  # (no munged process at all: skip the probe, which retries for ~2 s on a stale socket)
  if [ -n "$(pids_named munged)" ] && munge_ok; then log "munged already running"; return; fi
  runuser -u munge -- /usr/sbin/munged 9>&-          # daemonizes, writes /run/munge/munged.pid
  wait_for 10 munge_ok || die_log "munged did not start" /var/log/munge/munged.log
  cp /run/munge/munged.pid "$RUN/munged.pid"         # recorded = started by us
  log "munged started (pid $(cat "$RUN/munged.pid"))"
}

# ------------------------------------------------------------------------- 3. MariaDB
start_mariadb() {
  if ours mariadbd && db_ok; then log "mariadbd already running"; return; fi
  # a system MariaDB may run as well: ours has its own datadir, socket and port
  if port_open "$DB_PORT"; then
    die "port $DB_PORT (SIMBABENCH_SLURM_DB_PORT) is taken by another process"
  fi
  if [ ! -d "$DBDIR/mysql" ]; then
    log "initialising MariaDB datadir $DBDIR"
    rm -rf "$DBDIR"; install -d -o mysql -g mysql -m 0700 "$DBDIR"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DBDIR" --skip-test-db \
        --auth-root-authentication-method=socket > "$LOGD/mariadb-install.log" 2>&1 \
      || die_log "mariadb-install-db failed" "$LOGD/mariadb-install.log"
  fi
  # TCP on 127.0.0.1 only (slurmdbd connects by host+port), socket for our admin commands
  setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DBDIR" --socket="$DBSOCK" \
      --pid-file="$DBDIR/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
      --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
      --innodb-lock-wait-timeout=900 --log-error="$LOGD/mariadb.log" </dev/null >/dev/null 2>&1 9>&- &
  wait_for 60 db_ok || die_log "mariadbd did not start" "$LOGD/mariadb.log"
  cp "$DBDIR/mariadbd.pid" "$RUN/mariadbd.pid"
  log "mariadbd started (pid $(cat "$RUN/mariadbd.pid"), 127.0.0.1:$DB_PORT)"
  mariadb --no-defaults --socket="$DBSOCK" -uroot -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
    ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
    || die "could not create the MariaDB user for slurmdbd"
}

# ------------------------------------------------------------------------- 4. config files
SLURM_CHANGED=0
DBD_CHANGED=0
# put DEST MODE < CONTENT: replace DEST only when the content differs; return 0 when replaced
put() {
  local tmp; tmp=$(mktemp); cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; chmod "$2" "$1"; return 1; fi
  install -m "$2" "$tmp" "$1"; rm -f "$tmp"; log "wrote $1"
}
fake_gpus() {
  # A GPU GRES needs File= naming character devices: without File= slurmd reports 0 GPUs and
  # the node goes INVAL; regular files are rejected. c 1:3 is the /dev/null device. If mknod is
  # not permitted (unprivileged container), symlinks to /dev/null also stat as char devices.
  local i f
  mkdir -p "$BASE/gpu"
  for ((i = 0; i < GPUS; i++)); do
    f="$BASE/gpu/gpu$i"
    [ -c "$f" ] && continue
    rm -f "$f"
    mknod "$f" c 1 3 2>/dev/null || ln -s /dev/null "$f"
  done
}
write_conf() {
  mkdir -p "$CONF" "$BASE/ctld" "$BASE/spool"
  local acct="AccountingStorageType=accounting_storage/none" gres="" nodegres=""
  if [ "$ACCOUNTING" = 1 ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
  fi
  if [ "$GPUS" -gt 0 ]; then
    fake_gpus
    gres="GresTypes=gpu"; nodegres="Gres=gpu:$GPUS"
    put "$CONF/gres.conf" 0644 <<EOF && SLURM_CHANGED=1
$MARK
# fake GPUs: device nodes that behave like /dev/null (scheduling and CUDA_VISIBLE_DEVICES are real)
Name=gpu File=$BASE/gpu/gpu[0-$((GPUS - 1))]
EOF
  elif [ -e "$CONF/gres.conf" ]; then
    rm -f "$CONF/gres.conf"; SLURM_CHANGED=1
  fi
  put "$CONF/slurm.conf" 0644 <<EOF && SLURM_CHANGED=1
$MARK
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# also how long a requeued job waits before it may start again (default 120 s, minimum 5)
AuthInfo=cred_expire=5
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: independent of the machine's cgroup layout (so no confinement either)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
$acct
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# schedule pending and requeued jobs within 1-2 s (defaults: 30-60 s passes)
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem would otherwise get the whole node's memory (one job at a time)
DefMemPerCPU=$DEFMEM_MB
# trust CPUs/RealMemory below even when they exceed the hardware (else DRAIN "Low CPUs")
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
# submitit ignores SIGTERM, so cancelled/requeued jobs die at the SIGKILL KillWait s later
KillWait=5
Waittime=0
JobRequeue=1
$gres
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB $nodegres State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
  if [ "$ACCOUNTING" = 1 ]; then
    # slurmdbd refuses a slurmdbd.conf readable by group/other or not owned by SlurmUser
    put "$CONF/slurmdbd.conf" 0600 <<EOF && DBD_CHANGED=1
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOGD/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
    chown root:root "$CONF/slurmdbd.conf"
  fi
  [ $SLURM_CHANGED = 1 ] || [ $DBD_CHANGED = 1 ] || log "config unchanged ($CONF)"
}

# ------------------------------------------------------------------------- 5. slurm daemons
start_slurm() {
  foreign slurmdbd; foreign slurmctld; foreign slurmd
  if [ $SLURM_CHANGED = 1 ] && { ours slurmd || ours slurmctld; }; then
    log "slurm.conf/gres.conf changed: restarting slurmctld and slurmd"
    stop slurmd slurmctld
  fi
  if [ $DBD_CHANGED = 1 ] && ours slurmdbd; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    stop slurmdbd
  fi
  if [ "$ACCOUNTING" = 1 ]; then
    if ours slurmdbd; then log "slurmdbd already running"; else
      port_open 6819 && die "port 6819 (slurmdbd) is taken by another process"
      slurmdbd 9>&-                          # daemonizes; creates the DB tables on first start
      wait_for 30 port_open 6819 || die_log "slurmdbd is not listening on 6819" "$LOGD/slurmdbd.log"
      log "slurmdbd started (pid $(cat "$RUN/slurmdbd.pid"))"
    fi
  fi
  if ours slurmctld && ! wait_for 10 ctld_up; then
    log "slurmctld runs but does not answer: restarting it"; stop slurmctld
  fi
  if ours slurmctld; then log "slurmctld already running"; else
    port_open 6817 && die "port 6817 (slurmctld) is taken by another process"
    slurmctld 9>&-                           # registers the cluster in slurmdbd by itself
    wait_for 30 ctld_up || die_log "slurmctld is not answering" "$LOGD/slurmctld.log"
    log "slurmctld started (pid $(cat "$RUN/slurmctld.pid"))"
  fi
  local grace=0
  if ours slurmd; then log "slurmd already running"; else
    # -N: the node is "localhost" whatever the hostname. A new slurmd kills the one named in
    # SlurmdPidFile, which is why it is only started when the recorded one is gone.
    slurmd -N "$NODE" 9>&-
    grace=2000000000   # give a new slurmd 2 s to register before resuming a drained node
    wait_for 10 ours slurmd || die_log "slurmd did not start" "$LOGD/slurmd.log"
    log "slurmd started (pid $(cat "$RUN/slurmd.pid"))"
  fi
  # The node must reach idle/mixed/allocated. A DRAIN/DOWN left by an earlier run (bad config,
  # killed slurmd) is resumed once; ReturnToService=2 does not undrain, and resuming a node that
  # is not drained/down fails ("Invalid node state specified"), hence only when needed.
  local st="" resumed=0 end=$(( $(date +%s) + 20 )) first
  first=$(date +%s%N)
  while :; do
    st=$(node_state)
    case "$st" in
      idle|mixed|allocated|completing) break ;;
      *drain*|down*|inval*|fail*)
        if [ $resumed = 0 ] && [ $(( $(date +%s%N) - first )) -ge "$grace" ]; then
          log "node is '$st' ($(node_reason)): resuming"
          scontrol update nodename="$NODE" state=resume || true
          resumed=1
        fi ;;
    esac
    [ "$(date +%s)" -lt "$end" ] || die_log "node stays '$st': $(node_reason)" "$LOGD/slurmd.log"
    sleep 0.1
  done
  log "node $NODE is $st"
}

# ------------------------------------------------------------------------- 6. health check
# job_state ID: JobState from slurmctld (kept MinJobAge=300 s after the end)
job_state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
health() {
  command -v sinfo >/dev/null || die "Slurm client tools are not installed (run: bash slurm/cluster.sh up)"
  ctld_up || die "slurmctld is not answering (scontrol ping); run: bash slurm/cluster.sh up"
  local out="$LOGD"
  [ -w "$out" ] || out=$(mktemp -d)
  local parts st gres ngpu=0 p
  parts=$(sinfo -h -o %R | sort | tr '\n' ' ')
  for p in cpu gpu; do
    [[ " $parts" == *" $p "* ]] || die "partition '$p' missing (sinfo shows: $parts)"
  done
  st=$(node_state)
  case "$st" in
    idle|mixed|allocated|completing) ;;
    *) die "node $NODE is '$st': $(node_reason)" ;;
  esac
  gres=$(sinfo -h -p gpu -o %G | head -1)
  [[ "$gres" =~ gpu:([0-9]+) ]] && ngpu=${BASH_REMATCH[1]}
  # One batch job per partition, each running an srun step (as submitit does). On gpu, with GRES,
  # the step must see CUDA_VISIBLE_DEVICES. Jobs run in parallel; polling beats `sbatch --wait`.
  local cpujob gpujob gpuarg="" j state t0 deadline busy
  [ "$ngpu" -gt 0 ] && gpuarg="--gres=gpu:1"
  cpujob=$(sbatch --parsable -p cpu -n 1 -c 1 --mem=100M -t 1 -J simbabench-health -o "$out/health-%j.out" \
           --wrap 'srun -n 1 bash -c "echo step on \$SLURMD_NODENAME partition=\$SLURM_JOB_PARTITION"') \
    || die "sbatch on partition cpu failed"
  gpujob=$(sbatch --parsable -p gpu -n 1 -c 1 --mem=100M -t 1 $gpuarg -J simbabench-health -o "$out/health-%j.out" \
           --wrap 'srun -n 1 bash -c "echo step on \$SLURMD_NODENAME partition=\$SLURM_JOB_PARTITION CUDA_VISIBLE_DEVICES=\${CUDA_VISIBLE_DEVICES-unset}"') \
    || die "sbatch on partition gpu failed"
  deadline=$(( $(date +%s) + 60 ))
  for j in "$cpujob" "$gpujob"; do
    t0=$(date +%s)
    while :; do
      state=$(job_state "$j")
      case "$state" in
        COMPLETED) break ;;
        PENDING|CONFIGURING|RUNNING|COMPLETING|"") ;;
        *) die_log "health job $j ended $state" "$out/health-$j.out" ;;
      esac
      if [ "$state" = PENDING ] && [ $(( $(date +%s) - t0 )) -ge 15 ]; then
        # a node full of other jobs is busy, not broken: accept when others are running
        busy=$(squeue -h -t RUNNING -o %A | grep -vcx -e "$cpujob" -e "$gpujob" || true)
        if [ "$busy" -gt 0 ]; then
          log "health job $j still pending ($busy other jobs running): node busy, skipping the job check"
          scancel "$cpujob" "$gpujob" 2>/dev/null || true
          return 0
        fi
      fi
      [ "$(date +%s)" -lt "$deadline" ] || {
        scancel "$j" 2>/dev/null || true
        die "health job $j did not finish in 60 s (state $state: $(scontrol show job -o "$j" | grep -o 'Reason=[^ ]*'))"; }
      sleep 0.1
    done
  done
  log "cpu job $cpujob: $(cat "$out/health-$cpujob.out")"
  log "gpu job $gpujob: $(cat "$out/health-$gpujob.out")"
  if [ "$ngpu" -gt 0 ]; then
    grep -q 'CUDA_VISIBLE_DEVICES=[0-9]' "$out/health-$gpujob.out" \
      || die "gpu job $gpujob did not see CUDA_VISIBLE_DEVICES: $(cat "$out/health-$gpujob.out")"
  fi
  rm -f "$out/health-$cpujob.out" "$out/health-$gpujob.out"
  if sacct -n -X -j "$gpujob" -o State >/dev/null 2>&1; then
    wait_for 20 bash -c "sacct -n -X -j $gpujob -o State | grep -q COMPLETED" \
      || die "sacct does not report job $gpujob as COMPLETED: $(sacct -n -X -j "$gpujob" -o State 2>&1)"
    log "sacct sees job $gpujob COMPLETED"
  else
    log "WARNING: sacct does not work (accounting off?): submitit's job.state stays UNKNOWN"
  fi
  log "healthy: partitions ${parts% }; node $NODE $(node_state), CPUs $(sinfo -h -n "$NODE" -o %c | head -1), GPUs $ngpu"
}

# ------------------------------------------------------------------------- commands
# one up/down/reset at a time (e.g. several pytest workers). Daemons are started with 9>&- so
# that they do not inherit (and hold forever) the lock.
with_lock() {
  mkdir -p "$RUN" "$LOGD"
  exec 9>"$BASE/.lock"
  flock -n 9 && return
  log "waiting for $BASE/.lock (another cluster.sh is running)"
  flock -w 300 9 || die "another cluster.sh has held $BASE/.lock for 300 s"
}

up() {
  need_root up
  with_lock
  log "up: state dir $BASE, CPUs $CPUS, memory ${MEM_MB} MB (DefMemPerCPU $DEFMEM_MB), GPUs $GPUS, accounting $ACCOUNTING"
  install_pkgs
  start_munge
  if [ "$ACCOUNTING" = 1 ]; then start_mariadb; else stop slurmdbd; stop mariadbd; fi
  write_conf
  start_slurm
  health
  log "cluster up in $(( ($(date +%s%N) - T0) / 1000000 )) ms (logs: $LOGD)"
}

down() {
  need_root down
  with_lock
  local jobs
  if command -v squeue >/dev/null && ctld_up; then
    # slurmstepd is detached from slurmd: jobs would outlive the daemons, so cancel them first
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// }" ]; then
      log "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      wait_for 30 bash -c '[ -z "$(squeue -h 2>/dev/null)" ]' || log "WARNING: jobs still listed: $(squeue -h | wc -l)"
    fi
  fi
  stop slurmd slurmctld
  stop slurmdbd
  stop mariadbd
  stop munged        # only if we started it (a munged found running is left alone)
  log "down in $(( ($(date +%s%N) - T0) / 1000000 )) ms"
}

status() {
  local n rc=0
  echo "state dir: $BASE"
  for n in munged mariadbd slurmdbd slurmctld slurmd; do
    if ours "$n"; then echo "  $n: running (pid $(cat "$RUN/$n.pid"), started by cluster.sh)"
    elif [ -n "$(pids_named "$n")" ]; then echo "  $n: running (pid $(pids_named "$n" | tr '\n' ' ')), not started by cluster.sh"
    else echo "  $n: not running"; fi
  done
  if command -v sinfo >/dev/null && ctld_up; then
    sinfo -o '%9P %5a %10l %6D %8t %6c %8m %G'
    squeue
  else
    echo "slurmctld is not answering"; rc=3
  fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status || { DIED=1; exit 3; } ;;
  health) health ;;
  reset) down; rm -rf "$BASE"; log "removed $BASE" ;;
  *) echo "usage: bash $0 up|down|status|health|reset   (knobs: see the header of this file)" >&2; exit 2 ;;
esac
