#!/usr/bin/env bash
# A single-node Slurm on this host, on loopback only: for the cluster tests and for trying
# `--launcher slurm` without a cluster.
#
#   bash scripts/local_slurm.sh start    # install slurm-wlm + munge if missing, start, wait for an idle node
#   bash scripts/local_slurm.sh status   # sinfo, or exit 1 when it is not running
#   bash scripts/local_slurm.sh stop     # stop the daemons (state and logs are kept)
#
# Runs as root, without systemd: munged, slurmctld and slurmd are started directly. Everything
# (munge key and socket, slurm.conf, state, logs, pid files) lives under $WS_SLURM_DIR
# (default /var/tmp/worldstereo-slurm). /etc/slurm/slurm.conf is made a link to that slurm.conf
# so that sbatch / squeue / scancel find it without SLURM_CONF; an existing real file there is
# never replaced (then export SLURM_CONF=$WS_SLURM_DIR/slurm.conf).
# No cgroups are needed: proctrack/linuxproc, task/none, jobacct_gather/none. There is no
# accounting database, so `sacct` does not work here; worldstereo.launch polls squeue instead.
set -euo pipefail

DIR=${WS_SLURM_DIR:-/var/tmp/worldstereo-slurm}
CTLD_PORT=${WS_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
PARTITION=${WS_SLURM_PARTITION:-debug}
WAIT_S=${WS_SLURM_WAIT_S:-60}
CONF=$DIR/slurm.conf

die() { echo "local_slurm: error: $*" >&2; exit 1; }
say() { echo "local_slurm: $*" >&2; }

pid_alive() {  # pid_alive <pidfile>: the daemon recorded there still runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [[ $(id -u) == 0 ]] || die "slurm-wlm and munge are not installed and this is not root (apt-get install slurm-wlm munge)"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
}

write_munge_key() {
    mkdir -p "$DIR/munge"
    chmod 700 "$DIR/munge"
    if [[ ! -s $DIR/munge/munge.key ]]; then
        head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
    fi
    chmod 400 "$DIR/munge/munge.key"
}

write_conf() {
    local host node_line mem
    host=$(hostname -s)
    # slurmd -C reports this machine as slurmd sees it (sockets, cores, threads, RealMemory in MB);
    # a little memory is held back so that slurmd never finds less than configured (node DRAIN).
    node_line=$(slurmd -C | head -n 1)
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 95 / 100))/" <<<"$node_line")
    mkdir -p "$DIR/state/ctld" "$DIR/state/slurmd" "$DIR/log" "$DIR/run"
    cat > "$CONF.tmp" <<EOF
# written by scripts/local_slurm.sh: a single-node Slurm on loopback
ClusterName=worldstereo
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    mkdir -p /etc/slurm
    if [[ -L /etc/slurm/slurm.conf || ! -e /etc/slurm/slurm.conf ]]; then
        ln -sfn "$CONF" /etc/slurm/slurm.conf
    elif [[ ${SLURM_CONF:-} != "$CONF" ]]; then
        say "/etc/slurm/slurm.conf is a real file and is left alone: export SLURM_CONF=$CONF"
    fi
}

node_state() {  # the node's state as sinfo sees it (idle, mixed, down*, ...), empty when unreachable
    SLURM_CONF=$CONF timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true
}

wait_idle() {
    local state="" t0=$SECONDS
    while (( SECONDS - t0 < WAIT_S )); do
        state=$(node_state)
        case $state in
            idle|mixed|allocated|completing) return 0 ;;
        esac
        sleep 1
    done
    say "slurmctld log tail:"; tail -n 5 "$DIR/log/slurmctld.log" >&2 2>/dev/null || true
    say "slurmd log tail:"; tail -n 5 "$DIR/log/slurmd.log" >&2 2>/dev/null || true
    die "the node is not idle after ${WAIT_S}s (sinfo state: '${state:-no answer}'); logs in $DIR/log"
}

start() {
    install_packages
    write_munge_key
    write_conf
    if ! pid_alive "$DIR/run/munged.pid"; then
        # --force: the state folder may sit below a world-writable (sticky) /var/tmp or /tmp
        munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
            --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
            || die "munged did not start (log: $DIR/log/munged.log)"
    fi
    if ! pid_alive "$DIR/run/slurmctld.pid"; then
        SLURM_CONF=$CONF slurmctld -f "$CONF" || die "slurmctld did not start (log: $DIR/log/slurmctld.log)"
    fi
    if ! pid_alive "$DIR/run/slurmd.pid"; then
        SLURM_CONF=$CONF slurmd -f "$CONF" || die "slurmd did not start (log: $DIR/log/slurmd.log)"
    fi
    wait_idle
    # A node left DOWN/DRAIN by an earlier run is resumed by ReturnToService=2 once slurmd registers.
    say "running: partition '$PARTITION' on $(hostname -s) ($(nproc) cores), config $CONF"
    SLURM_CONF=$CONF sinfo
}

stop_one() {  # stop_one <name>: TERM the daemon, wait up to 10 s for it to exit
    local pidfile=$DIR/run/$1.pid pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && die "$1 (pid $pid) did not stop"
    rm -f "$pidfile"
}

stop() {
    stop_one slurmd
    stop_one slurmctld
    stop_one munged
    say "stopped (state and logs kept in $DIR)"
}

status() {
    if pid_alive "$DIR/run/slurmctld.pid" && pid_alive "$DIR/run/slurmd.pid" && [[ -n $(node_state) ]]; then
        SLURM_CONF=$CONF sinfo
    else
        say "not running (state folder $DIR)"
        return 1
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
