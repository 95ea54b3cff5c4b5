#!/usr/bin/env bash
# A private one-node Slurm 22.05 cluster for developing reconciliation
# (/work/wt/QUICK-CLUSTER.md), until test-cluster/ has a harness.
#   quick-cluster.sh up TASKPLUGIN "PLUGSTACK ARGS" [--cpuset GROUP] [--taskset CPUS]
#   quick-cluster.sh down
set -euo pipefail
D=${BERTH_QC_DIR:-/tmp/berth-reconcile}
N=r1
H=$(hostname)
PLUGIN=${BERTH_PLUGIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/libberth.so}
export SLURM_CONF=$D/slurm.conf

stop_pid() { # stop a daemon we started, by its pid file
	local f=$1
	[[ -s $f ]] || return 0
	local pid; pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$f"
}

down() {
	stop_pid "$D/slurmd-$N.pid"
	stop_pid "$D/slurmctld.pid"
	stop_pid "$D/munge/munged.pid"
	for h in cpuset freezer; do
		[[ -d /sys/fs/cgroup/$h/slurm_$N ]] && find /sys/fs/cgroup/$h/slurm_$N -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
}

up() {
	local task=$1 args=$2; shift 2
	local cpuset= taskset=
	while (($#)); do case $1 in --cpuset) cpuset=$2; shift 2 ;; --taskset) taskset=$2; shift 2 ;; *) exit 2 ;; esac; done
	down
	mkdir -p "$D"/{state,spool/$N,log,munge}
	if [[ ! -s $D/munge/munge.key ]]; then
		dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 2>/dev/null
		chown -R munge: "$D/munge"; chmod 755 "$D/munge"; chmod 400 "$D/munge/munge.key"
	fi
	cat >"$D/slurm.conf" <<EOC
ClusterName=reconcile
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=26817
SlurmdPort=26818
SrunPortRange=46800-46899
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
SlurmdDebug=${BERTH_QC_DEBUG:-info}
ProctrackType=proctrack/cgroup
TaskPlugin=$task
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
PlugStackConfig=$D/plugstack.conf
NodeName=$N NodeHostname=$H NodeAddr=127.0.0.1 Port=26001 CPUs=2 State=UNKNOWN
PartitionName=p Nodes=$N Default=YES State=UP OverSubscribe=NO
EOC
	printf 'CgroupPlugin=cgroup/v1\nConstrainCores=yes\nConstrainRAMSpace=no\nConstrainSwapSpace=no\n' >"$D/cgroup.conf"
	echo "required $PLUGIN $args" >"$D/plugstack.conf"
	runuser -u munge -- /usr/sbin/munged --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" \
		--pid-file="$D/munge/munged.pid" --seed-file="$D/munge/seed" --log-file="$D/munge/munged.log"
	slurmctld
	local launch=(slurmd -N "$N")
	[[ -n $taskset ]] && launch=(taskset -c "$taskset" "${launch[@]}")
	if [[ -n $cpuset ]]; then
		# start slurmd inside the external cpuset: a shell that moves itself first
		bash -c 'echo $$ > /sys/fs/cgroup/cpuset/'"$cpuset"'/cgroup.procs && exec "$@"' _ "${launch[@]}"
	else
		"${launch[@]}"
	fi
	for _ in $(seq 100); do
		sinfo -h -o %T 2>/dev/null | grep -qx idle && return 0
		sleep 0.2
	done
	echo "node not idle" >&2; sinfo >&2; exit 1
}

case ${1:-} in
up) shift; up "$@" ;;
down) down ;;
*) echo "usage: $0 up TASKPLUGIN ARGS [--cpuset G] [--taskset CPUS] | down" >&2; exit 2 ;;
esac
