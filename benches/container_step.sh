#!/usr/bin/env bash
# What `srun --container=IMAGE.sif` adds to a job step, measured on a local test
# cluster (test-cluster/up): berth's own time per hook, from its debug log lines
# (microseconds, in-process: srun wall time is too noisy to resolve a millisecond,
# see notes/performance.md), and srun wall-time medians for reference.
#
# For a small image (busybox, 1 MB) and a large one (~300 MB, ~36k files), first use
# (mount_idle_seconds=0: every step mounts the image) and repeated use (300: the
# mount is shared and reused), RUNS steps each, alternating `srun -n1 true` and
# `srun -n1 --container=IMG true`; then the cost of an extra task (-n2 vs -n1).
#
# usage: benches/container_step.sh [--slurm 22.05|24.11] [--instance NAME] [--runs N]
# Needs root, the release build (cargo build --release) and squashfs-tools.
set -euo pipefail
SLURM=22.05 INSTANCE=bench-container RUNS=50
while (($#)); do
	case "$1" in
	--slurm) SLURM=$2 && shift 2 ;;
	--instance) INSTANCE=$2 && shift 2 ;;
	--runs) RUNS=$2 && shift 2 ;;
	*) echo "usage: $0 [--slurm 22.05|24.11] [--instance NAME] [--runs N]" >&2 && exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
RUN_DIR=/run/berth-bench

test-cluster/up --slurm "$SLURM" --instance "$INSTANCE" --nodes 1 --debug verbose \
	--plugstack-args "run_dir=$RUN_DIR mount_idle_seconds=300" >/dev/null
eval "$(test-cluster/env --instance "$INSTANCE")"
LOG=$BERTH_TC_LOGS/$(ls "$BERTH_TC_LOGS" | grep -m1 '^slurmd-.*\.log$')
IMAGES=$BERTH_TC_SHARED/bench-images
mkdir -p "$IMAGES"

client() { test-cluster/client --instance "$INSTANCE" --cwd "$BERTH_TC_SHARED" "$@"; }

# ---- images ---------------------------------------------------------------------------
if [[ ! -f $IMAGES/small.sif ]]; then
	target/release/berth sif build --busybox "$IMAGES/small.sif" >/dev/null
fi
if [[ ! -f $IMAGES/large.sif ]]; then
	work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
	mkdir -p "$work/rootfs/bin"
	cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
	for a in sh true cat ls; do ln -s busybox "$work/rootfs/bin/$a"; done
	# ~300 MB in 36000 files of incompressible data, 120 directories.
	python3 - "$work/rootfs/data" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(120):
    p = os.path.join(root, f"d{d:03}")
    os.makedirs(p)
    for f in range(300):
        with open(os.path.join(p, f"f{f:03}"), "wb") as out:
            out.write(os.urandom(8400))
PY
	target/release/berth sif build "$work/rootfs" "$IMAGES/large.sif" >/dev/null
	rm -rf "$work"
fi
chmod 644 "$IMAGES"/*.sif

# ---- measurement ------------------------------------------------------------------------
now_ms() { date +%s.%N; }

# run_pair IMAGE ARGS...: one plain and one container step, wall times appended to files.
run_pair() {
	local img=$1 t0 t1 t2
	shift
	t0=$(now_ms)
	client srun -n1 "$@" true >/dev/null
	t1=$(now_ms)
	client srun -n1 "$@" "--container=$img" true >/dev/null
	t2=$(now_ms)
	echo "$t0 $t1" >>"$WALL_PLAIN"
	echo "$t1 $t2" >>"$WALL_CTR"
}

report() { # report LABEL LOG_OFFSET
	python3 - "$1" "$LOG" "$2" "$WALL_PLAIN" "$WALL_CTR" <<'PY'
import re, statistics, sys
label, log, offset, plain, ctr = sys.argv[1:]
with open(log, errors="replace") as f:
    f.seek(int(offset))
    text = f.read()
def med(xs):
    return statistics.median(xs) if xs else float("nan")
hooks = {}
for m in re.finditer(r"container: (\w+) took (\d+) us", text):
    hooks.setdefault(m.group(1), []).append(int(m.group(2)))
phases = {}
for m in re.finditer(r"container: (?:image \S+|view built|exit|env): (.*)", text):
    for k, v in re.findall(r"([\w+-]+)=(\d+)us", m.group(1)):
        phases.setdefault(k, []).append(int(v))
def wall(path):
    with open(path) as f:
        return [1000 * (float(b) - float(a)) for a, b in (l.split() for l in f)]
wp, wc = wall(plain), wall(ctr)
print(f"== {label}: {len(hooks.get('user_init', []))} container steps")
for h in ("user_init", "task_init_privileged", "task_init", "exit"):
    if h in hooks:
        print(f"   {h:22s} median {med(hooks[h]) / 1000:7.3f} ms  (n={len(hooks[h])})")
total = sum(med(hooks.get(h, [])) for h in ("user_init", "task_init_privileged", "task_init", "exit") if h in hooks)
print(f"   {'berth total per step':22s} median-sum {total / 1000:7.3f} ms")
print("   phases (median us, n): " + " ".join(f"{k}={med(v):.0f}({len(v)})" for k, v in phases.items()))
print(f"   srun wall: plain {med(wp):.1f} ms, container {med(wc):.1f} ms, difference {med(wc) - med(wp):+.1f} ms")
PY
}

bench() { # bench LABEL IDLE IMAGE [SRUN ARGS]
	local label=$1 idle=$2 img=$3
	shift 3
	test-cluster/set-plugstack --instance "$INSTANCE" "run_dir=$RUN_DIR mount_idle_seconds=$idle" >/dev/null
	client srun -n1 "--container=$img" true >/dev/null # warm up (and mount, when reused)
	sleep 0.5
	local offset
	offset=$(stat -c %s "$LOG")
	WALL_PLAIN=$(mktemp) WALL_CTR=$(mktemp)
	for ((i = 0; i < RUNS; i++)); do
		run_pair "$img" "$@"
	done
	sleep 0.5
	report "$label" "$offset"
	rm -f "$WALL_PLAIN" "$WALL_CTR"
}

echo "berth container step benchmark: Slurm $SLURM, $RUNS steps per case, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for size in small large; do
	ls -la "$IMAGES/$size.sif" | awk '{printf "image %s: %d bytes\n", $NF, $5}'
	bench "$size image, first use (mounted by every step)" 0 "$IMAGES/$size.sif"
	bench "$size image, repeated use (mount reused)" 300 "$IMAGES/$size.sif"
done
bench "small image, repeated use, 2 tasks (-n2)" 300 "$IMAGES/small.sif" -n2
test-cluster/set-plugstack --instance "$INSTANCE" "run_dir=$RUN_DIR mount_idle_seconds=0" >/dev/null
client srun -n1 "--container=$IMAGES/small.sif" true >/dev/null # unmounts what is idle
echo "(take the cluster down with: test-cluster/down --instance $INSTANCE)"
