#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for running grids as job arrays locally and
# in `make test`. Everything lives in one state folder (slurm.conf, spool, logs, pid files);
# /etc/slurm is never touched and daemons are stopped only by the PIDs this script started.
# Facts and pitfalls: ../shared/notes/slurm.md (Debian 12, Slurm 22.05, no systemd).
#
#   scripts/slurm-local.sh install   # apt-get the four packages (root), if missing
#   scripts/slurm-local.sh start     # munged (unless one answers already), slurmctld, slurmd
#   scripts/slurm-local.sh env       # prints `export SLURM_CONF=...` for this cluster
#   scripts/slurm-local.sh stop      # stops what `start` started, by PID
#
# GQCIM_SLURM_DIR picks the state folder (default /tmp/gqcim-slurm).
set -euo pipefail
DIR=${GQCIM_SLURM_DIR:-/tmp/gqcim-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

need() { command -v "$1" >/dev/null 2>&1; }

wait_for_file() { # file, tenths of a second
  for _ in $(seq 1 "$2"); do [ -s "$1" ] && return 0; sleep 0.1; done
  return 1
}

install() {
  if need slurmctld && need slurmd && need sbatch && need munged; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "Slurm is not installed; as root: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
  mkdir -p "$DIR/state" "$DIR/spool"
  # The node line from what slurmd sees (CPUs, sockets, cores, memory).
  local node
  node=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]*//' -e 's/UpTime=.*//')
  cat >"$CONF" <<CONF
ClusterName=gqcim
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
NodeName=node1 NodeAddr=127.0.0.1 NodeHostname=localhost $node
PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo ">> munged already answers; using it"
    return 0
  fi
  mkdir -p /run/munge
  chown munge:munge /run/munge 2>/dev/null || true
  chmod 0755 /run/munge
  if [ ! -f /etc/munge/munge.key ]; then
    echo "no /etc/munge/munge.key (the munge package creates it on install)" >&2
    exit 1
  fi
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  # munged forks: its own pid file names the daemon (pgrep can catch the exiting parent).
  wait_for_file /run/munge/munged.pid 50 && cp /run/munge/munged.pid "$DIR/munged.pid.ours"
}

alive() { # pid: running and not a zombie
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ') || return 1
  [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

start() {
  install
  if [ -s "$DIR/slurmctld.pid" ] && alive "$(cat "$DIR/slurmctld.pid")"; then
    echo ">> slurm already running in $DIR"
    return 0
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  write_conf
  start_munge
  slurmctld -i -f "$CONF"
  wait_for_file "$DIR/slurmctld.pid" 100 || { echo "slurmctld did not start; see $DIR/slurmctld.log" >&2; exit 1; }
  slurmd -N node1 -f "$CONF"
  wait_for_file "$DIR/slurmd.pid" 100 || { echo "slurmd did not start; see $DIR/slurmd.log" >&2; exit 1; }
  for _ in $(seq 1 100); do
    if sinfo -h -o %t 2>/dev/null | grep -q idle; then
      echo ">> single-node slurm up in $DIR ($(sinfo -h -o '%c CPUs, %m MB'))"
      return 0
    fi
    sleep 0.2
  done
  echo "node1 did not become idle; see $DIR/slurmd.log and $DIR/slurmctld.log" >&2
  exit 1
}

stop_pid() { # pid file, name
  [ -s "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if alive "$pid"; then kill "$pid" 2>/dev/null || true; fi
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$1"
}

stop() {
  [ -d "$DIR" ] || return 0
  local ctld=""
  [ -s "$DIR/slurmctld.pid" ] && ctld=$(cat "$DIR/slurmctld.pid")
  if [ -n "$ctld" ] && alive "$ctld"; then
    # Stops both daemons (~1.6 s); the PID kills below catch whatever remains.
    scontrol shutdown >/dev/null 2>&1 || true
    for _ in $(seq 1 40); do alive "$ctld" || break; sleep 0.1; done
  fi
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munged.pid.ours"
  echo ">> slurm in $DIR stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|start|env|stop" >&2; exit 2 ;;
esac
