#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (Debian's slurm-wlm + munge), for the Slurm tests and for trying
# `python train.py -m hydra/launcher=slurm ...` locally. Needs root and apt (CI machines; containers without systemd).
#
#   sudo scripts/slurm_local.sh          # install if missing, configure, start; waits until `sinfo` shows the node idle
#   scripts/slurm_local.sh --stop        # stop the daemons this script started
#
# The node is this machine as `slurmd -C` describes it (all its CPUs and memory), one partition `debug`. Process
# tracking is proctrack/linuxproc and task/none, so no cgroups are needed (containers often lack them); accounting is
# off. Exit status 0 when the node is idle, 1 when Slurm could not be installed or started (the reason is printed).
set -euo pipefail

CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}

die() { echo "slurm_local: $*" >&2; exit 1; }

stop() {
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  [[ -f /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  echo "slurm_local: stopped"
}

if [[ ${1:-} == "--stop" ]]; then stop; exit 0; fi
[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts the Slurm daemons)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm_local: installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (no network to the Debian mirror?)"
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
fi

# munge: one key shared by the daemons and the client commands
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null; else
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null || die "munge does not round-trip a credential (see /var/log/munge/munged.log)"
fi

# slurm.conf: this node as slurmd sees it
mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
node_line=$(slurmd -C | head -n 1)
[[ $node_line == NodeName=* ]] || die "slurmd -C did not describe this node: $node_line"
node=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node_line")
# keep ~10% of the memory for the system, so a job asking for it all is refused instead of killing the machine
mem=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$node_line")
node_line=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$(( mem * 9 / 10 ))/" <<<"$node_line")
# talk over the loopback: the host name need not resolve (fresh CI machines, containers)
node_line="$node_line NodeAddr=127.0.0.1 NodeHostname=$node"
cat > "$CONF_DIR/slurm.conf" <<CONF
# Written by crosscoder scripts/slurm_local.sh: one node, no cgroups, no accounting.
ClusterName=crosscoder-local
SlurmctldHost=$node(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=3600
$node_line State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

if pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null; then
  scontrol reconfigure || die "slurmctld is running but did not take the new slurm.conf; run $0 --stop, then $0"
else
  pgrep -x slurmctld >/dev/null || slurmctld || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
  pgrep -x slurmd >/dev/null || slurmd || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi

for _ in $(seq "$WAIT_S"); do
  state=$(sinfo -h -N -n "$node" -o %T 2>/dev/null || true)
  case $state in
    idle*|mixed*|allocated*) echo "slurm_local: node $node is $state"; sinfo; exit 0 ;;
    down*|drain*) scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
tail -n 20 "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log" >&2 || true
die "node $node did not become idle within ${WAIT_S}s (state: ${state:-unknown})"
