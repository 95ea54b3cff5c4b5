# shellcheck shell=bash
# Shared by the test-cluster scripts; source it, do not run it.
#
# Layout:
#   test-cluster/run/<instance>/          one cluster instance (configs, munge key, state,
#                                         spool, logs, pids, shared/): see `up`
#   /var/lib/berth-test-cluster/slots/N   which instance holds slot N (ports, node names)
#   /var/lib/berth-test-cluster/roots/N/  the 24.11/26.05 chroot of slot N (overlay over a base)
#   /var/cache/berth-test-cluster/        the Debian bases, made once by `setup`:
#                                         trixie-root (24.11), sid-root (26.05),
#                                         apptainer-root (the reference Apptainer)

TC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$TC_DIR")
RUN_DIR=$TC_DIR/run
STATE_ROOT=/var/lib/berth-test-cluster
CACHE_ROOT=/var/cache/berth-test-cluster
BASE_2411=${BERTH_TC_ROOT_2411:-$CACHE_ROOT/trixie-root}
BASE_2605=$CACHE_ROOT/sid-root
# test-cluster/test-package: Debian 12 with Debian's Slurm 22.05 (for the 22.05 package).
BASE_BOOKWORM=$CACHE_ROOT/bookworm-root
# BERTH_TC_ROOT_2205 / BERTH_TC_ROOT_2411: run 22.05 / 24.11 from this Debian root
# instead (test-package: a copy of a base with berth's package installed).
BASE_2205=${BERTH_TC_ROOT_2205:-}
BASE_APPTAINER=$CACHE_ROOT/apptainer-root
MAX_SLOTS=40

TEST_USER=berthtest
TEST_UID=5001
# The user cgrulesengd rules in the tests name (never berthtest: other engineers share it).
RULE_USER=berthrule
RULE_UID=5002

# The plugin each version loads by default: built against that version's headers.
PLUGIN_2205=$REPO_DIR/target/release/libberth.so
PLUGIN_2411=$REPO_DIR/target/slurm-24.11/release/libberth.so
PLUGIN_2605=$REPO_DIR/target/slurm-26.05/release/libberth.so
# Where 24.11's copy lives inside the chroot.
PLUGIN_IN_ROOT=/usr/local/lib/berth/libberth.so

# The cgroup v1 hierarchies Slurm may use. NEVER add memory: it belongs to the machine.
CGROUP_CONTROLLERS=(cpuset cpu cpuacct freezer devices pids)

CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

case ":$PATH:" in
*:/root/.cargo/bin:*) ;;
*) [[ -d /root/.cargo/bin ]] && PATH=/root/.cargo/bin:$PATH ;;
esac
export PATH

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# runs_in_chroot VERSION: 22.05 runs on the host (unless BERTH_TC_ROOT_2205 is set),
# 24.11 and 26.05 in a Debian chroot.
runs_in_chroot() { [[ $1 != 22.05 || -n $BASE_2205 ]]; }

# base_of VERSION: the cached Debian root a chrooted version runs from.
base_of() {
	case "$1" in
	22.05) [[ -n $BASE_2205 ]] || die "Slurm 22.05 runs on the host, not in a chroot"
		printf '%s\n' "$BASE_2205" ;;
	24.11) printf '%s\n' "$BASE_2411" ;;
	26.05) printf '%s\n' "$BASE_2605" ;;
	*) die "Slurm $1 runs on the host, not in a chroot" ;;
	esac
}

# plugin_of VERSION: the plugin built against that version's headers.
plugin_of() {
	case "$1" in
	24.11) printf '%s\n' "$PLUGIN_2411" ;;
	26.05) printf '%s\n' "$PLUGIN_2605" ;;
	*) printf '%s\n' "$PLUGIN_2205" ;;
	esac
}

# build_command_of VERSION: how to build that plugin (run from the repository).
build_command_of() {
	if runs_in_chroot "$1"; then
		printf 'SLURM_INCLUDE_DIR=%s/usr/include CARGO_TARGET_DIR=target/slurm-%s cargo build --release\n' "$(base_of "$1")" "$1"
	else
		printf 'cargo build --release\n'
	fi
}

# default_instance VERSION
default_instance() { printf 'slurm-%s\n' "$1"; }

check_version() {
	case "$1" in
	22.05 | 24.11 | 26.05) ;;
	*) die "unknown Slurm version '$1' (use 22.05, 24.11 or 26.05)" ;;
	esac
}

# resolve_instance: from $OPT_SLURM / $OPT_INSTANCE (set by the caller's option parsing,
# defaulting to $BERTH_E2E_SLURM / $BERTH_E2E_INSTANCE), sets VERSION, INSTANCE, IDIR.
# An instance that was brought up before knows its own version.
resolve_instance() {
	local want_version=${OPT_SLURM:-${BERTH_E2E_SLURM:-}}
	INSTANCE=${OPT_INSTANCE:-${BERTH_E2E_INSTANCE:-}}
	if [[ -z $INSTANCE ]]; then
		want_version=${want_version:-22.05}
		check_version "$want_version"
		INSTANCE=$(default_instance "$want_version")
	fi
	[[ $INSTANCE =~ ^[A-Za-z0-9._-]+$ ]] || die "bad instance name '$INSTANCE' (letters, digits, . _ - only)"
	IDIR=$RUN_DIR/$INSTANCE
	local recorded=
	[[ -f $IDIR/instance.info ]] && recorded=$(info_get version)
	if [[ -n $want_version ]]; then
		check_version "$want_version"
		VERSION=$want_version
	elif [[ -n $recorded ]]; then
		VERSION=$recorded
	else
		VERSION=22.05
	fi
}

# info_get KEY: a value from the instance's instance.info (key=value lines).
info_get() {
	local line
	[[ -f $IDIR/instance.info ]] || return 0
	while IFS= read -r line; do
		if [[ ${line%%=*} == "$1" ]]; then
			printf '%s\n' "${line#*=}"
			return 0
		fi
	done <"$IDIR/instance.info"
}

# info_set KEY VALUE: replace one line of instance.info.
info_set() {
	local line out=()
	while IFS= read -r line; do
		if [[ ${line%%=*} == "$1" ]]; then
			out+=("$1=$2")
		else
			out+=("$line")
		fi
	done <"$IDIR/instance.info"
	printf '%s\n' "${out[@]}" >"$IDIR/instance.info.tmp"
	mv "$IDIR/instance.info.tmp" "$IDIR/instance.info"
}

slot_ports() { # slot_ports SLOT: sets CTLD_PORT, NODE_PORT_BASE, SRUN_PORTS
	CTLD_PORT=$((17000 + $1 * 10))
	NODE_PORT_BASE=$CTLD_PORT # node k listens on base + k
	SRUN_PORTS="$((40000 + $1 * 100))-$((40000 + $1 * 100 + 99))"
}
node_name() { printf 'b%sn%s\n' "$1" "$2"; } # node_name SLOT K
root_of_slot() { printf '%s/roots/%s\n' "$STATE_ROOT" "$1"; }

port_in_use() { [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]; }

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# Run a client command for this instance: client_cmd USER CWD -- CMD...
# USER is "" for root. Builds the right environment, on the host or in the chroot.
client_exec() {
	local user=$1 cwd=$2
	shift 2
	local conf root version
	conf=$(info_get slurm_conf)
	root=$(info_get root)
	version=$(info_get version)
	[[ -n $conf ]] || die "instance '$INSTANCE' is not up (no $IDIR/instance.info); run test-cluster/up"
	local home=/root uname=root
	local -a as_user=()
	if [[ -n $user && $user != root ]]; then
		uname=$user
		home=/home/$user
		local uid gid
		uid=$(id -u "$user") gid=$(id -g "$user")
		as_user=(setpriv "--reuid=$uid" "--regid=$gid" --init-groups)
	fi
	local -a envs=(env -i "PATH=$CLEAN_PATH" "HOME=$home" "USER=$uname" "LOGNAME=$uname"
		"SLURM_CONF=$conf" "LANG=C.UTF-8" "${CLIENT_ENV[@]}")
	if [[ -n $root ]]; then
		[[ -d $root/usr ]] || die "the $version chroot $root is not mounted; run test-cluster/up --slurm $version"
		# shellcheck disable=SC2016 # $1 and $@ are the inner shell's
		exec chroot "$root" "${envs[@]}" "${as_user[@]}" /bin/sh -c 'cd "$1" || exit 125; shift; exec "$@"' sh "$cwd" "$@"
	else
		cd "$cwd" || exit 125
		exec "${envs[@]}" "${as_user[@]}" "$@"
	fi
}
CLIENT_ENV=()

# ---- daemons -------------------------------------------------------------------------

proc_starttime() { # field 22 of /proc/PID/stat (after the parenthesised command name)
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	printf '%s\n' "${20}"
}

proc_state() { # R, S, Z, ... (field 3)
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	printf '%s\n' "${stat%% *}"
}

# start_daemon NAME CMD...: start CMD detached (own session, no inherited descriptors but
# /dev/null and its log), and record "pid starttime" in pids/NAME.started so that `down`
# signals exactly this process and nothing that reused its pid.
# $DAEMON_CPUSET, if set, is a cpuset cgroup (under /sys/fs/cgroup/cpuset) to start it in;
# $DAEMON_CPUACCT the same for the cpuacct hierarchy.
start_daemon() {
	local name=$1
	shift
	(
		exec </dev/null >>"$IDIR/log/$name.stderr" 2>&1 8>&- 9>&-
		if [[ -n ${DAEMON_CPUSET:-} ]]; then
			echo "$BASHPID" >"/sys/fs/cgroup/cpuset/$DAEMON_CPUSET/tasks"
		fi
		if [[ -n ${DAEMON_CPUACCT:-} ]]; then
			echo "$BASHPID" >"/sys/fs/cgroup/cpuacct/$DAEMON_CPUACCT/tasks"
		fi
		exec setsid "$@"
	) &
	local pid=$! start
	start=$(proc_starttime "$pid") || die "$name exited at once; see $IDIR/log/$name.stderr"
	printf '%s %s\n' "$pid" "$start" >"$IDIR/pids/$name.started"
}

# recorded_pid NAME: the pid recorded for NAME if that very process still runs.
recorded_pid() {
	local f=$IDIR/pids/$1.started pid start
	[[ -f $f ]] || return 1
	read -r pid start <"$f"
	[[ $(proc_starttime "$pid" 2>/dev/null) == "$start" ]] || return 1
	# An exited daemon stays a zombie until init reaps it (here, up to a second later).
	[[ $(proc_state "$pid") != Z ]] || return 1
	printf '%s\n' "$pid"
}

# stop_daemon NAME: SIGTERM the recorded process, wait, SIGKILL after 20 s.
stop_daemon() {
	local name=$1 pid i
	if pid=$(recorded_pid "$name"); then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 200; i++)); do
			recorded_pid "$name" >/dev/null || break
			sleep 0.1
		done
		if recorded_pid "$name" >/dev/null; then
			say "warning: $name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "$IDIR/pids/$name.started"
}

instance_running() {
	local f
	for f in "$IDIR"/pids/*.started; do
		[[ -f $f ]] || continue
		f=${f##*/}
		recorded_pid "${f%.started}" >/dev/null && return 0
	done
	return 1
}

# ---- chroot mounts (24.11, 26.05) -------------------------------------------------------------

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
	local dir=$1
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo |
		awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-
}

# mount_root SLOT BASE: the instance's own root: an overlay over the cached Debian BASE,
# with proc, sys (without its submounts), a tmpfs at sys/fs/cgroup holding only the
# controllers Slurm may use, dev, and the instance directory at its own absolute path.
mount_root() {
	local r
	r=$(root_of_slot "$1")
	local root=$r/root
	[[ -z $(mounts_under "$root") ]] || die "$root is still mounted; run test-cluster/down first"
	rm -rf "$r/upper" "$r/work"
	mkdir -p "$r/upper" "$r/work" "$root"
	mount -t overlay "berth-tc-$1" -o "lowerdir=$2,upperdir=$r/upper,workdir=$r/work" "$root"
	mount --make-private "$root"
	mount -t proc proc "$root/proc"
	mount --make-private "$root/proc"
	mount --bind /sys "$root/sys"
	mount --make-private "$root/sys"
	mount -t tmpfs -o mode=755,size=64k berth-cgroup "$root/sys/fs/cgroup"
	mount --make-private "$root/sys/fs/cgroup"
	local c
	for c in "${CGROUP_CONTROLLERS[@]}"; do
		mkdir "$root/sys/fs/cgroup/$c"
		mount --bind "/sys/fs/cgroup/$c" "$root/sys/fs/cgroup/$c"
		mount --make-private "$root/sys/fs/cgroup/$c"
	done
	local d
	for d in dev dev/pts dev/shm; do
		mkdir -p "$root/$d"
		mount --bind "/$d" "$root/$d"
		mount --make-private "$root/$d"
	done
	mkdir -p "$root$IDIR"
	mount --bind "$IDIR" "$root$IDIR"
	mount --make-private "$root$IDIR"
	cp /etc/hosts "$root/etc/hosts"
}

# unmount_site: undo `up --shared-mounts`'s tmpfs at <instance>/site on the host (its
# bind in the chroot goes with unmount_root).
unmount_site() {
	local m
	while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" || say "warning: could not unmount $m"
	done < <(mounts_under "$IDIR/site")
}

# unmount_root SLOT: undo mount_root. Processes still running inside the root can only
# be leftovers of this instance's jobs; they are killed first.
unmount_root() {
	local r root
	r=$(root_of_slot "$1")
	root=$r/root
	[[ -d $root ]] || return 0
	local p pids=()
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/root" 2>/dev/null) == "$root" ]] && pids+=("${p#/proc/}")
	done
	if ((${#pids[@]})); then
		say "killing leftover processes inside $root: ${pids[*]}"
		kill -KILL "${pids[@]}" 2>/dev/null || true
		sleep 0.5
	fi
	local m failed=
	while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" || failed+=" $m"
	done < <(mounts_under "$root")
	[[ -z $failed ]] || say "warning: could not unmount:$failed"
	[[ -n $(mounts_under "$root") ]] || rm -rf "$r/upper" "$r/work"
}

# ---- cgroups --------------------------------------------------------------------------

# kill_node_tasks NODE: leftover job processes (slurmstepd and tasks) in the node's
# freezer and cpuset cgroups; they were started by this instance's slurmd.
kill_node_tasks() {
	local c pids=()
	for c in freezer cpuset; do
		local top=/sys/fs/cgroup/$c/slurm_$1
		[[ -d $top ]] || continue
		mapfile -t -O "${#pids[@]}" pids < <(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null)
	done
	if ((${#pids[@]})); then
		say "killing leftover job processes of node $1: ${pids[*]}"
		kill -KILL "${pids[@]}" 2>/dev/null || true
		sleep 0.5
	fi
}

# remove_node_cgroups NODE: rmdir slurm_NODE and below, in every controller but memory.
remove_node_cgroups() {
	local c
	for c in "${CGROUP_CONTROLLERS[@]}" blkio systemd; do
		local top=/sys/fs/cgroup/$c/slurm_$1
		[[ -d $top ]] || continue
		find "$top" -depth -type d -exec rmdir {} + 2>/dev/null ||
			say "warning: could not remove all of $top (processes still in it?)"
	done
}
