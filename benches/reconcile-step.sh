#!/usr/bin/env bash
# What berth adds to a job step, measured as CPU time (not wall time: see
# /work/shared/notes/performance.md and benches/README.md).
#
# slurmd runs inside its own cpuacct cgroup (test-cluster/up --slurmd-cpuacct), so
# cpuacct.usage counts slurmd, every slurmstepd and the tasks, but not srun. Each
# sample is one `srun -n1 true`: usage read before, the step, a short wait for
# slurmstepd to finish, usage read after. Steps without berth (an empty plugstack.conf)
# and with berth alternate (A B A B ...; slurmstepd reads plugstack.conf per step),
# in two cases:
#   no-conflict  slurmd as usual;
#   conflict     slurmd inside an external cpuset {1}, the step on core 0: berth
#                reconciles (cpuset_policy=shares); without berth, task/affinity,
#                task/cgroup already runs this step right, so the two do the same work
#                apart from berth's.
# Then one more pass with SlurmdDebug=debug for berth's own per-hook timing lines
# (`reconcile: <hook> took N us`, trace level). Prints medians; runs on its own
# instance `bench` and takes it down at the end.
usage() {
	cat <<'EOF'
usage: benches/reconcile-step.sh [--slurm 22.05|24.11] [--runs N] [--keep-up]
  --runs   samples per variant and case (default 60, at least 50 for the figures)
EOF
}
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TC=$REPO/test-cluster

VERSION=22.05 RUNS=60 KEEP_UP=''
while (($#)); do
	case "$1" in
	--slurm) VERSION=${2:?} && shift 2 ;;
	--runs) RUNS=${2:?} && shift 2 ;;
	--keep-up) KEEP_UP=yes && shift ;;
	-h | --help) usage && exit 0 ;;
	*) usage >&2 && exit 2 ;;
	esac
done
INSTANCE=bench-${VERSION}
ACCT=berth-bench-$$
EXT=berth-ext-bench-$$
ACCT_DIR=/sys/fs/cgroup/cpuacct/$ACCT
EXT_DIR=/sys/fs/cgroup/cpuset/$EXT

cleanup() {
	[[ -n $KEEP_UP ]] || "$TC/down" --instance "$INSTANCE" >/dev/null 2>&1 || true
	rmdir "$ACCT_DIR" 2>/dev/null || true
	rmdir "$EXT_DIR" 2>/dev/null || true
	rm -rf "$(run_dir)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$ACCT_DIR" "$EXT_DIR"
echo 0 >"$EXT_DIR/cpuset.mems"
echo 1 >"$EXT_DIR/cpuset.cpus"

info() { sed -n "s/^$1=//p" "$REPO/test-cluster/run/$INSTANCE/instance.info"; }

up() { # up DEBUG [--slurmd-cpuset CG]
	local debug=$1
	shift
	"$TC/up" --slurm "$VERSION" --instance "$INSTANCE" --task-plugin affinity,cgroup \
		--slurmd-cpuacct "$ACCT" --debug "$debug" --plugstack-args "run_dir=$(run_dir)" "$@" >/dev/null
	PLUGSTACK=$(info plugstack_conf)
	PLUGIN=$(info plugin)
}
# berth's registry on a tmpfs, as /run is on a node (here /run is on ext4, where each
# registry update costs ~0.2 ms more); /dev/shm is the same in the 24.11 chroot.
run_dir() { printf '/dev/shm/berth-bench-%s' "$$"; }

with_berth() { printf 'required %s run_dir=%s\n' "$PLUGIN" "$(run_dir)" >"$PLUGSTACK"; }
without_berth() { printf '# no plugin\n' >"$PLUGSTACK"; }

# sample: CPU nanoseconds slurmd's cgroup used for one `srun -n1 true`.
sample() {
	local before after
	before=$(cat "$ACCT_DIR/cpuacct.usage")
	"$TC/client" --instance "$INSTANCE" srun -n1 true >/dev/null 2>&1 || return 1
	sleep 0.1 # slurmstepd's exit, after srun returned
	after=$(cat "$ACCT_DIR/cpuacct.usage")
	echo $((after - before))
}

median_ms() { sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f", m / 1e6 }'; }

measure() { # measure CASE: RUNS alternating pairs; prints the medians
	local case=$1 i a b fa fb
	fa=$(mktemp) fb=$(mktemp)
	for _ in 1 2 3; do without_berth && sample >/dev/null && with_berth && sample >/dev/null; done # warm
	for ((i = 0; i < RUNS; i++)); do
		without_berth
		a=$(sample) && echo "$a" >>"$fa"
		with_berth
		b=$(sample) && echo "$b" >>"$fb"
	done
	local ma mb
	ma=$(median_ms <"$fa") mb=$(median_ms <"$fb")
	printf '%-12s without berth %7s ms   with berth %7s ms   added %6s ms  (median CPU per step, %s pairs)\n' \
		"$case" "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.3f", b - a }')" "$(wc -l <"$fb")"
	rm -f "$fa" "$fb"
}

hook_times() { # hook_times CASE: berth's own trace lines, median per hook
	local case=$1 mark log
	log=$(info log_dir)/slurmd-$(info nodes | cut -d' ' -f1).log
	with_berth
	mark=$(wc -c <"$log")
	for ((i = 0; i < RUNS; i++)); do
		"$TC/client" --instance "$INSTANCE" srun -n1 true >/dev/null 2>&1
	done
	sleep 0.3
	tail -c +"$((mark + 1))" "$log" | grep -o 'reconcile: [a-z_]* took [0-9]* us' |
		awk '{ h = $2; v[h] = v[h] " " $4 } END { for (h in v) print h, v[h] }' | sort |
		while read -r hook values; do
			printf '%-12s %-15s median %5s us over %s steps\n' "$case" "$hook" \
				"$(tr ' ' '\n' <<<"$values" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" \
				"$(wc -w <<<"$values")"
		done
}

echo "berth per-step cost, Slurm $VERSION, $(nproc) CPUs, kernel $(uname -r), $RUNS samples each"
up info
measure no-conflict
up info --slurmd-cpuset "$EXT"
measure conflict
up debug
hook_times no-conflict
up debug --slurmd-cpuset "$EXT"
hook_times conflict
without_berth
