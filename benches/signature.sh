#!/usr/bin/env bash
# What `require_signature=yes` costs (issue 14):
# 1. the first verification of a ~300 MB image: `berth sif verify` against `sha256sum`
#    of the same file (hashing is the cost), hyperfine, page cache warm;
# 2. a repeated step (mount reused, verification kept with it): berth's user_init time
#    and its "signature" phase from berth's debug lines, require_signature=yes vs no,
#    RUNS steps each, alternating.
# The image is signed with the reference Apptainer (test-cluster/setup --apptainer).
#
# usage: benches/signature.sh [--slurm 22.05|24.11|26.05] [--instance NAME] [--runs N]
# Needs root, the release build (cargo build --release) and squashfs-tools.
set -euo pipefail
SLURM=22.05 INSTANCE=bench-signature RUNS=40
while (($#)); do
	case "$1" in
	--slurm) SLURM=$2 && shift 2 ;;
	--instance) INSTANCE=$2 && shift 2 ;;
	--runs) RUNS=$2 && shift 2 ;;
	*) echo "usage: $0 [--slurm 22.05|24.11|26.05] [--instance NAME] [--runs N]" >&2 && exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
RUN_DIR=/run/berth-bench-sig
BERTH=target/release/berth

test-cluster/up --slurm "$SLURM" --instance "$INSTANCE" --nodes 1 --debug verbose \
	--plugstack-args "run_dir=$RUN_DIR mount_idle_seconds=300" >/dev/null
eval "$(test-cluster/env --instance "$INSTANCE")"
LOG=$BERTH_TC_LOGS/$(ls "$BERTH_TC_LOGS" | grep -m1 '^slurmd-.*\.log$')
IMAGES=$BERTH_TC_SHARED/bench-signature
mkdir -p "$IMAGES"
client() { test-cluster/client --instance "$INSTANCE" --cwd "$BERTH_TC_SHARED" "$@"; }

# ---- the image: ~300 MB of incompressible data, signed by a key from `key newpair` ----
if [[ ! -f $IMAGES/large.sif || ! -f $IMAGES/site.asc ]]; then
	work=$(mktemp -d /tmp/berth-bench-sig.XXXXXX)
	mkdir -p "$work/rootfs/bin" "$work/home"
	cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
	for a in sh true cat ls; do ln -s busybox "$work/rootfs/bin/$a"; done
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
	$BERTH sif build "$work/rootfs" "$work/large.sif" >/dev/null
	A="test-cluster/apptainer --env HOME=$work/home"
	$A key newpair --name Bench --email bench@example.org --comment bench --password "" --push=false >/dev/null
	$A sign "$work/large.sif" >/dev/null 2>&1
	echo 0 | $A key export --armor "$work/site.asc" >/dev/null
	cp "$work/large.sif" "$work/site.asc" "$IMAGES/"
	rm -rf "$work"
fi
chmod 644 "$IMAGES"/*
SIZE=$(stat -c %s "$IMAGES/large.sif")
echo "signature benchmark: Slurm $SLURM, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), image $SIZE bytes"

# ---- 1. first verification against sha256sum --------------------------------------------
json=$(mktemp)
hyperfine --style none --warmup 1 --runs 5 --export-json "$json" \
	"sha256sum $IMAGES/large.sif" \
	"openssl dgst -sha256 $IMAGES/large.sif" \
	"$BERTH sif verify $IMAGES/large.sif --keys $IMAGES/site.asc" >/dev/null
python3 - "$json" "$SIZE" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2]) / 1e6
for r in res:
    name = " ".join(r["command"].split()[:2]) if r["command"].startswith("openssl") else ("sha256sum" if r["command"].startswith("sha256sum") else "berth sif verify")
    print(f"   {name:18s} {r['mean']*1000:8.1f} ms +- {r['stddev']*1000:5.1f}  {size / r['mean']:7.1f} MB/s")
PY
rm -f "$json"

# ---- 2. repeated steps ------------------------------------------------------------------
policy() { # policy yes|no
	test-cluster/set-plugstack --instance "$INSTANCE" \
		"run_dir=$RUN_DIR mount_idle_seconds=300 require_signature=$1 signature_keys=$IMAGES/site.asc" >/dev/null 2>&1
}
offsets=()
for p in no yes; do
	policy $p
	client srun -n1 "--container=$IMAGES/large.sif" true >/dev/null # first use: mount (+ verify)
done
sleep 0.5
declare -A OFF
for ((i = 0; i < RUNS; i++)); do
	for p in no yes; do
		policy $p
		o=$(stat -c %s "$LOG")
		client srun -n1 "--container=$IMAGES/large.sif" true >/dev/null
		sleep 0.2
		echo "$o $(stat -c %s "$LOG")" >>"/tmp/berth-bench-sig-$p.$$"
	done
done
for p in no yes; do
	python3 - "$p" "$LOG" "/tmp/berth-bench-sig-$p.$$" <<'PY'
import re, statistics, sys
p, log, ranges = sys.argv[1:]
data = open(log, "rb").read().decode(errors="replace")
ui, sig = [], []
for line in open(ranges):
    a, b = map(int, line.split())
    text = data[a:b]
    ui += [int(x) for x in re.findall(r"container: user_init took (\d+) us", text)]
    sig += [int(x) for x in re.findall(r"signature=(\d+)us", text)]
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"   require_signature={p:3s} user_init median {med(ui)/1000:6.3f} ms (n={len(ui)}), signature phase median {med(sig)/1000:6.3f} ms (n={len(sig)})")
PY
	rm -f "/tmp/berth-bench-sig-$p.$$"
done
test-cluster/set-plugstack --instance "$INSTANCE" "run_dir=$RUN_DIR mount_idle_seconds=0" >/dev/null
client srun -n1 "--container=$IMAGES/large.sif" true >/dev/null # unmounts what is idle
echo "(take the cluster down with: test-cluster/down --instance $INSTANCE)"
