//! Ways a site imposes a cpuset on Slurm's jobs from outside Slurm, for tests that
//! need one (cpuset reconciliation, `berth doctor`). Each is set up by one call and
//! undone when its value is dropped, also when the test panics:
//!
//! - [`ExternalCpuset::create`]: a cpuset cgroup `/sys/fs/cgroup/cpuset/berth-ext-*`.
//!   Start slurmd inside it with `Setup::slurmd_cpuset(ext.name())`, or name it in a
//!   cgrules.conf rule.
//! - [`Cgrulesengd::start`]: the real cgrulesengd with rules for [`RULE_USER`] only
//!   (the test user `berthtest` is shared by other engineers' tests); run the job as
//!   `RULE_USER`.
//! - slurmd under taskset: `Setup::slurmd_affinity("1")` (no object needed).
//! - [`TaskMover::install`]: a small SPANK plugin listed before berth that moves every
//!   task into an external cpuset in task_post_fork, after Slurm placed it and before
//!   berth looks at it: what cgrulesengd does when its (asynchronous) move of a task
//!   lands late, made deterministic.
//!
//! ```ignore
//! let ext = ExternalCpuset::create(&external_name(&cluster, "a"), "1", "0");
//! cluster.ensure(&Setup::default().slurmd_cpuset(ext.name()));
//! // ... or:
//! let daemon = Cgrulesengd::start(&[Rule::cpuset(RULE_USER, &ext)], cluster.root().as_deref());
//! cluster.srun_as(RULE_USER, &["-n1", "true"]);
//! drop(daemon); // stopped, /etc/cgrules.conf & co. restored
//! ```
//!
//! The memory hierarchy is never touched. Only processes these objects started are
//! ever signalled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::cgroup::cgred::{socket_state, SocketState};
use berth::reconcile::process;

/// The user cgrules.conf rules name (created by test-cluster/setup on the host and in
/// the 24.11 chroot with the same uid).
pub const RULE_USER: &str = "berthrule";
pub const RULE_UID: u32 = 5002;

/// The cpuset hierarchy (cgroup v1) on this machine.
pub const CPUSET_ROOT: &str = "/sys/fs/cgroup/cpuset";
/// The cpu hierarchy (cgroup v1), where a weight (cpu.shares) lives.
pub const CPU_ROOT: &str = "/sys/fs/cgroup/cpu";
/// Every external cpuset these helpers make is named so.
pub const EXTERNAL_PREFIX: &str = "berth-ext-";
/// cgrulesengd's socket (a compile-time path of libcgroup).
pub const CGRED_SOCKET: &str = "/run/cgred.socket";

pub const CGRULES_CONF: &str = "/etc/cgrules.conf";
const CGCONFIG_CONF: &str = "/etc/cgconfig.conf";
const CGCONFIG_D: &str = "/etc/cgconfig.d";
/// One cgrulesengd on the machine at a time (its socket path is fixed): held while
/// one runs, by every checkout's tests.
const CGRED_LOCK: &str = "/var/lib/berth-test-cluster/cgrulesengd.lock";

fn write(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// rmdir with a few retries (a cgroup is busy for a moment after its last task exits).
fn remove_cgroup(dir: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Err(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// A name for an external cpuset of this cluster instance, `berth-ext-<instance>-<what>`
/// (instances of several engineers run side by side; each has its own cpusets).
pub fn external_name(cluster: &super::Cluster, what: &str) -> String {
    let inst: String = cluster
        .instance()
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    format!("{EXTERNAL_PREFIX}{inst}-{what}")
}

/// A cpuset cgroup outside Slurm's tree, `/sys/fs/cgroup/cpuset/<name>`; removed on drop.
pub struct ExternalCpuset {
    name: String,
}

impl ExternalCpuset {
    /// Creates (or resets, if a previous run left it) the cpuset `name`, which must
    /// start with `berth-ext-`, with these CPUs and memory nodes (e.g. "1", "0").
    pub fn create(name: &str, cpus: &str, mems: &str) -> ExternalCpuset {
        assert!(
            name.starts_with(EXTERNAL_PREFIX) && !name.contains('/'),
            "external cpusets are named {EXTERNAL_PREFIX}*: {name}"
        );
        let ext = ExternalCpuset { name: name.into() };
        let dir = ext.dir();
        if !dir.is_dir() {
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        // mems first: a v1 cpuset with CPUs and no memory node takes no task.
        write(&dir.join("cpuset.mems"), mems);
        write(&dir.join("cpuset.cpus"), cpus);
        ext
    }

    /// The cgroup's name, as `Setup::slurmd_cpuset` and cgrules.conf take it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup's path as /proc/PID/cgroup shows it: `/berth-ext-...`.
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    pub fn dir(&self) -> PathBuf {
        Path::new(CPUSET_ROOT).join(&self.name)
    }

    /// The same path in the cpu hierarchy (where `cpuset_policy=shares` keeps a weight).
    pub fn cpu_dir(&self) -> PathBuf {
        Path::new(CPU_ROOT).join(&self.name)
    }

    /// cpuset.cpus now.
    pub fn cpus(&self) -> String {
        read_trimmed(&self.dir().join("cpuset.cpus"))
    }

    pub fn mems(&self) -> String {
        read_trimmed(&self.dir().join("cpuset.mems"))
    }

    /// The pids in the cgroup now.
    pub fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.dir().join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for ExternalCpuset {
    fn drop(&mut self) {
        // A weight group berth should have removed is a test failure, reported by the
        // test; here it only must not stay behind.
        for dir in [self.cpu_dir(), self.dir()] {
            if dir.is_dir() {
                if let Err(e) = remove_cgroup(&dir) {
                    eprintln!(
                        "warning: cannot remove {} (still in use? {:?}): {e}",
                        dir.display(),
                        fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default()
                    );
                }
            }
        }
    }
}

/// The task mover's source: in task_post_fork it writes the task's pid to the file
/// named by its argument (a cgroup's `tasks`).
const TASK_MOVER_C: &str = r#"/* Built by berth's tests (tests/support/scenarios.rs, TaskMover). */
#include <stdio.h>
#include <sys/types.h>
#include <slurm/spank.h>

SPANK_PLUGIN(berth_test_task_mover, 1);

int slurm_spank_task_post_fork(spank_t sp, int ac, char **av)
{
	pid_t pid = 0;
	FILE *f;

	if (ac < 1 || spank_get_item(sp, S_TASK_PID, &pid) != ESPANK_SUCCESS)
		return -1;
	f = fopen(av[0], "w");
	if (!f) {
		slurm_error("berth_test_task_mover: cannot open %s", av[0]);
		return -1;
	}
	fprintf(f, "%d\n", (int)pid);
	if (fclose(f) != 0) {
		slurm_error("berth_test_task_mover: cannot move task %d to %s", (int)pid, av[0]);
		return -1;
	}
	slurm_info("berth_test_task_mover: moved task %d to %s", (int)pid, av[0]);
	return 0;
}
"#;

/// A SPANK plugin listed first in the instance's plugstack.conf (so its hooks run
/// before berth's) that moves each task into `ext` in task_post_fork. Built with the
/// node's Slurm headers into the instance's shared directory (the same path in the
/// 24.11 chroot); plugstack.conf is restored on drop (slurmstepd reads it per step).
pub struct TaskMover {
    plugstack_conf: PathBuf,
    original: String,
}

impl TaskMover {
    pub fn install(cluster: &super::Cluster, ext: &ExternalCpuset) -> TaskMover {
        let shared = cluster.shared_dir();
        let source = shared.join("berth-task-mover.c");
        let library = shared.join("berth-task-mover.so");
        write(&source, TASK_MOVER_C);
        let include = cluster
            .root()
            .map_or_else(|| PathBuf::from("/usr/include"), |r| r.join("usr/include"));
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&library)
            .arg("-I")
            .arg(&include)
            .arg(&source)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let plugstack_conf = PathBuf::from(&cluster.info()["plugstack_conf"]);
        let original = fs::read_to_string(&plugstack_conf)
            .unwrap_or_else(|e| panic!("read {}: {e}", plugstack_conf.display()));
        let line = format!(
            "required {} {}\n",
            library.display(),
            ext.dir().join("tasks").display()
        );
        let mut text = String::new();
        let mut added = false;
        for l in original.lines() {
            if !added && !l.trim_start().starts_with('#') && !l.trim().is_empty() {
                text.push_str(&line);
                added = true;
            }
            text.push_str(l);
            text.push('\n');
        }
        assert!(added, "{} has no plugin line", plugstack_conf.display());
        write(&plugstack_conf, &text);
        TaskMover {
            plugstack_conf,
            original,
        }
    }
}

impl Drop for TaskMover {
    fn drop(&mut self) {
        if let Err(e) = fs::write(&self.plugstack_conf, &self.original) {
            eprintln!(
                "warning: cannot restore {}: {e}",
                self.plugstack_conf.display()
            );
        }
    }
}

/// One cgrules.conf line: `<user> <controllers> <destination>`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub user: String,
    pub controllers: String,
    pub destination: String,
}

impl Rule {
    /// `<user> cpuset <ext>/`: cgrulesengd moves the user's processes into `ext`.
    pub fn cpuset(user: &str, ext: &ExternalCpuset) -> Rule {
        Rule {
            user: user.into(),
            controllers: "cpuset".into(),
            destination: format!("{}/", ext.name()),
        }
    }

    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\n",
            self.user, self.controllers, self.destination
        )
    }
}

/// A file or directory of /etc as it was before the daemon's files replaced it.
enum Saved {
    Absent,
    File(Vec<u8>),
    Dir,
}

fn save(p: &Path) -> Saved {
    if p.is_dir() {
        Saved::Dir
    } else {
        fs::read(p).map_or(Saved::Absent, Saved::File)
    }
}

fn restore(p: &Path, saved: &Saved) {
    let outcome = match saved {
        Saved::Absent if p.is_dir() => fs::remove_dir(p),
        Saved::Absent => fs::remove_file(p).or_else(|e| match e.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        }),
        Saved::File(bytes) => fs::write(p, bytes),
        Saved::Dir => Ok(()),
    };
    if let Err(e) = outcome {
        eprintln!("warning: cannot restore {}: {e}", p.display());
    }
}

/// The real cgrulesengd (`cgrulesengd -n -f LOG`) with its rules in /etc/cgrules.conf,
/// a child of the test; stopped (by its pid) and /etc restored on drop.
pub struct Cgrulesengd {
    child: Option<Child>,
    log: PathBuf,
    saved: Vec<(PathBuf, Saved)>,
    socket_was_there: bool,
    /// The socket bind-mounted into a chroot (see `start`).
    socket_mount: Option<PathBuf>,
    _lock: super::FileLock,
}

impl Cgrulesengd {
    /// Writes `rules` (each must name [`RULE_USER`]) to /etc/cgrules.conf, an empty
    /// /etc/cgconfig.conf and /etc/cgconfig.d (cgrulesengd exits without them), starts
    /// the daemon and waits until its socket answers. Waits while another test on the
    /// machine runs one.
    ///
    /// `root`: the chroot Slurm runs in (`Cluster::root()`, 24.11), or None. The daemon
    /// runs on the host and sees the chroot's processes (one kernel); its files and its
    /// socket are also put in the chroot, where a node's slurmstepd (and berth) would
    /// find them if Slurm ran on the host.
    pub fn start(rules: &[Rule], root: Option<&Path>) -> Cgrulesengd {
        for r in rules {
            assert_eq!(
                r.user, RULE_USER,
                "cgrules.conf rules in tests name only {RULE_USER}: {r:?}"
            );
        }
        let lock = super::FileLock::acquire(Path::new(CGRED_LOCK));
        wait_for_no_other_daemon();
        let mut etc = vec![Path::new("/").to_path_buf()];
        etc.extend(root.map(Path::to_path_buf));
        let mut saved = Vec::new();
        for r in &etc {
            for f in [CGRULES_CONF, CGCONFIG_CONF, CGCONFIG_D] {
                let p = in_root(r, f);
                saved.push((p.clone(), save(&p)));
            }
        }
        let socket_was_there = Path::new(CGRED_SOCKET).exists();
        // The rules first, so that rule i is on line i + 1 (as doctor and berth's
        // log lines number them); the comment last.
        let text: String = rules
            .iter()
            .map(Rule::line)
            .chain(std::iter::once(
                "# Written by berth's tests (tests/support/scenarios.rs).\n".to_string(),
            ))
            .collect();
        for r in &etc {
            write(&in_root(r, CGRULES_CONF), &text);
            if !in_root(r, CGCONFIG_CONF).exists() {
                write(&in_root(r, CGCONFIG_CONF), "");
            }
            fs::create_dir_all(in_root(r, CGCONFIG_D)).expect("mkdir /etc/cgconfig.d");
        }
        let log =
            std::env::temp_dir().join(format!("berth-cgrulesengd-{}.log", std::process::id()));
        let _ = fs::remove_file(&log);
        let mut daemon = Cgrulesengd {
            child: None,
            log: log.clone(),
            saved,
            socket_was_there,
            socket_mount: None,
            _lock: lock,
        };
        let child = Command::new("cgrulesengd")
            .args(["-n", "-vv", "-f"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start cgrulesengd (apt-get install cgroup-tools): {e}")
            });
        daemon.child = Some(child);
        daemon.wait_until_listening();
        if let Some(root) = root {
            let target = in_root(root, CGRED_SOCKET);
            if !target.exists() {
                write(&target, "");
            }
            let run = Command::new("mount")
                .arg("--bind")
                .arg(CGRED_SOCKET)
                .arg(&target)
                .status()
                .expect("run mount");
            assert!(
                run.success(),
                "mount --bind {CGRED_SOCKET} {}",
                target.display()
            );
            daemon.socket_mount = Some(target);
        }
        daemon
    }

    /// Waits until the daemon listens on its socket, without connecting: a client
    /// that connects and closes without a request kills libcgroup 2.0.2's
    /// cgrulesengd (it reads 0 bytes, answers into the closed socket and dies of
    /// SIGPIPE). berth's own passive check (/proc/net/unix) tells a listening socket
    /// from a file a dead daemon left.
    fn wait_until_listening(&mut self) {
        let start = Instant::now();
        loop {
            if let Err(status) = self.check_alive() {
                panic!(
                    "cgrulesengd exited at once ({status}); its log:\n{}",
                    self.log()
                );
            }
            if socket_state(Path::new(CGRED_SOCKET)) == SocketState::Listening {
                return;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "cgrulesengd did not listen on {CGRED_SOCKET} within 10 s; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ok while the daemon runs and listens; else how it ended.
    fn check_alive(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err("it was stopped".into());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(status.to_string()),
            Err(e) => Err(format!("cannot wait for it: {e}")),
        }
    }

    /// Ok while the daemon still runs and listens, else why not (with its log): a
    /// scenario that ran against a dead daemon proved nothing.
    pub fn alive(&mut self) -> Result<(), String> {
        let state = socket_state(Path::new(CGRED_SOCKET));
        match self.check_alive() {
            Ok(()) if state == SocketState::Listening => Ok(()),
            Ok(()) => Err(format!(
                "cgrulesengd runs but its socket is {state:?}; its log:\n{}",
                self.log()
            )),
            Err(how) => Err(format!(
                "cgrulesengd died during the scenario ({how}); its log:\n{}",
                self.log()
            )),
        }
    }

    #[track_caller]
    pub fn assert_alive(&mut self) {
        if let Err(e) = self.alive() {
            panic!("{e}");
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's log so far (`-vv`: INFO, one line per process it moves; `-v`
    /// logs warnings only).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the daemon (SIGTERM by pid, SIGKILL after 10 s) and restores /etc.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the child this object started (not yet reaped).
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        eprintln!("warning: cgrulesengd ignored SIGTERM for 10 s; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(target) = self.socket_mount.take() {
            let ok = Command::new("umount")
                .arg(&target)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                let _ = fs::remove_file(&target);
            } else {
                eprintln!("warning: cannot unmount {}", target.display());
            }
        }
        for (path, saved) in self.saved.drain(..).rev() {
            restore(&path, &saved);
        }
        // The socket file outlives the daemon; a stale one looks like a dead daemon.
        if !self.socket_was_there {
            let _ = fs::remove_file(CGRED_SOCKET);
        }
    }
}

fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

impl Drop for Cgrulesengd {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The pids of every cgrulesengd running on the machine (zombies do not run).
pub fn running_daemons() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "cgrulesengd")
                && process::is_running(*pid)
        })
        .collect()
}

/// Waits (up to 5 minutes) until no cgrulesengd runs: one started by a test that
/// does not take [`CGRED_LOCK`] owns the socket. It is never signalled.
fn wait_for_no_other_daemon() {
    let start = Instant::now();
    loop {
        let pids = running_daemons();
        if pids.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "another cgrulesengd (pids {pids:?}) has run for 5 minutes; it owns {CGRED_SOCKET}"
        );
        if start.elapsed() < Duration::from_millis(100) {
            eprintln!("waiting for another test's cgrulesengd (pids {pids:?}) to stop");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
