//! Harness for the end-to-end tests: a handle on one local test cluster instance
//! (test-cluster/up), chosen by the environment:
//!
//! - `BERTH_E2E_SLURM=22.05|24.11|26.05` selects the Slurm version. Unset: every e2e test
//!   prints why and returns at once, so a plain `cargo test` stays fast.
//! - `BERTH_E2E_INSTANCE=NAME` selects an instance (default `slurm-<version>`).
//! - `BERTH_E2E_PLUGIN=PATH` installs this libberth.so instead of the default build.
//!
//! Once `BERTH_E2E_SLURM` is set, a cluster that cannot be reached fails the test.
//! Tests hold the cluster exclusively (a lock in this process and a file lock shared
//! with other processes), so tests that reconfigure it never overlap.
//!
//! ```ignore
//! mod support;
//! #[test]
//! fn two_tasks() {
//!     let Some(cluster) = support::cluster() else { return };
//!     cluster.ensure(&support::Setup::default());
//!     cluster.srun(&["-n2", "hostname"]).assert_ok();
//! }
//! ```
#![allow(dead_code)] // each tests/e2e_*.rs uses its own part of the harness

pub mod scenarios;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The unprivileged user `test-cluster/setup` creates (same uid on host and chroot).
pub const TEST_USER: &str = "berthtest";
pub const TEST_UID: u32 = 5001;
/// Every client command is killed after this long: a hung job fails its test.
pub const CLIENT_TIMEOUT_SECS: u32 = 60;

/// The Slurm version of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V22_05,
    V24_11,
    V26_05,
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        match s {
            "22.05" => Some(Version::V22_05),
            "24.11" => Some(Version::V24_11),
            "26.05" => Some(Version::V26_05),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V22_05 => "22.05",
            Version::V24_11 => "24.11",
            Version::V26_05 => "26.05",
        }
    }
}

/// How the cluster must be configured for a test. `ensure` restarts it only when
/// the running configuration differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// 1 or 2 slurmd on this host.
    pub nodes: u8,
    /// `affinity`, `cgroup` or `affinity,cgroup`.
    pub task_plugin: String,
    /// berth's arguments in plugstack.conf.
    pub plugstack_args: String,
    /// false: no plugstack.conf line at all.
    pub berth: bool,
    /// slurm.conf PrologFlags (e.g. `Contain`, which gives every job an extern step).
    pub prolog_flags: String,
    /// A cpuset cgroup (path under /sys/fs/cgroup/cpuset) slurmd is started in, as
    /// on a site with an external cpuset; empty: none.
    pub slurmd_cpuset: String,
    /// slurmd's CPU affinity (`taskset -c`); "" every online CPU.
    pub slurmd_affinity: String,
    /// slurmd in a mount namespace whose mounts are rshared, and the instance's
    /// `site` directory a tmpfs shared with the host (`up --shared-mounts`).
    pub shared_mounts: bool,
}

impl Default for Setup {
    /// One node, task/affinity,task/cgroup, berth with `log_hooks=yes`.
    fn default() -> Setup {
        Setup {
            nodes: 1,
            task_plugin: "affinity,cgroup".into(),
            plugstack_args: "log_hooks=yes".into(),
            berth: true,
            prolog_flags: String::new(),
            slurmd_cpuset: String::new(),
            slurmd_affinity: String::new(),
            shared_mounts: false,
        }
    }
}

impl Setup {
    pub fn nodes(mut self, nodes: u8) -> Setup {
        self.nodes = nodes;
        self
    }
    pub fn task_plugin(mut self, task_plugin: &str) -> Setup {
        self.task_plugin = task_plugin.into();
        self
    }
    pub fn plugstack_args(mut self, args: &str) -> Setup {
        self.plugstack_args = args.into();
        self
    }
    pub fn without_berth(mut self) -> Setup {
        self.berth = false;
        self
    }
    pub fn prolog_flags(mut self, flags: &str) -> Setup {
        self.prolog_flags = flags.into();
        self
    }
    /// Start slurmd inside this cpuset cgroup (e.g. `berth-ext-a`, see `scenarios`).
    pub fn slurmd_cpuset(mut self, cgroup: &str) -> Setup {
        self.slurmd_cpuset = cgroup.into();
        self
    }
    /// Start slurmd with this CPU affinity (e.g. `1`), as `taskset -c 1 slurmd`.
    pub fn slurmd_affinity(mut self, cpus: &str) -> Setup {
        self.slurmd_affinity = cpus.into();
        self
    }
    /// Run slurmd where every mount is rshared, as on a systemd host (`up --shared-mounts`).
    pub fn shared_mounts(mut self, shared: bool) -> Setup {
        self.shared_mounts = shared;
        self
    }
}

/// One client command and what came of it.
#[derive(Clone, Debug)]
pub struct Run {
    pub cmd: String,
    /// The exit code; None if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to the end, prints what it did (shown when a test fails).
    pub fn of(cmd: &mut Command) -> Run {
        let text = format!("{cmd:?}");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {text}: {e}"));
        let run = Run {
            cmd: text,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("{run}");
        run
    }

    /// The lines of stderr berth wrote for the user (`berth: ...`).
    pub fn berth_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("berth:"))
            .collect()
    }

    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Killed by the harness's timeout (timeout(1) exits 124, or 137 after SIGKILL).
    pub fn timed_out(&self) -> bool {
        matches!(self.code, Some(124) | Some(137))
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Run {
        assert!(
            !self.timed_out(),
            "timed out after {CLIENT_TIMEOUT_SECS} s:\n{self}"
        );
        assert!(self.ok(), "failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_failed(&self) -> &Run {
        assert!(!self.timed_out(), "timed out:\n{self}");
        assert!(!self.ok(), "succeeded but should have failed:\n{self}");
        self
    }

    /// stdout's lines, trimmed, without empty ones.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}\nexit code: {:?}", self.cmd, self.code)?;
        writeln!(f, "--- stdout\n{}", self.stdout)?;
        write!(f, "--- stderr\n{}", self.stderr)
    }
}

/// A batch job that ran to its end.
#[derive(Clone, Debug)]
pub struct BatchJob {
    pub job_id: u32,
    /// sbatch --wait's own result (its exit code is the job's).
    pub run: Run,
    /// The job's output file (stdout and stderr).
    pub output: String,
}

/// Where the slurmd logs stood at some moment: `log_since` returns what came after.
#[derive(Clone, Debug)]
pub struct LogMark {
    offsets: Vec<(PathBuf, u64)>,
}

/// What one task saw of its placement (see `Cluster::tasks`).
#[derive(Clone, Debug)]
pub struct TaskView {
    pub rank: u32,
    /// Cpus_allowed_list from /proc/self/status, e.g. "0-1".
    pub cpus_allowed: String,
    /// /proc/self/cgroup: controller (e.g. "cpuset", "freezer", "" for v2) -> path.
    pub cgroups: BTreeMap<String, String>,
}

impl TaskView {
    pub fn cgroup(&self, controller: &str) -> &str {
        self.cgroups
            .get(controller)
            .map(String::as_str)
            .unwrap_or("")
    }
}

static PROCESS_LOCK: Mutex<()> = Mutex::new(());

/// The cluster selected by the environment, held exclusively until dropped; None (with
/// the reason printed) when `BERTH_E2E_SLURM` is unset. Panics if it is set but the
/// cluster cannot be reached.
pub fn cluster() -> Option<Cluster> {
    let Ok(version) = std::env::var("BERTH_E2E_SLURM") else {
        eprintln!("skipped: BERTH_E2E_SLURM is not set (set it to 22.05, 24.11 or 26.05 and bring the cluster up with test-cluster/up to run the end-to-end tests)");
        return None;
    };
    let version = Version::parse(&version)
        .unwrap_or_else(|| panic!("BERTH_E2E_SLURM={version}: expected 22.05, 24.11 or 26.05"));
    let instance = std::env::var("BERTH_E2E_INSTANCE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("slurm-{}", version.as_str()));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join("test-cluster/run").join(&instance);

    let process_lock = PROCESS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let file_lock = FileLock::acquire(&dir.join("e2e.lock"));
    let cluster = Cluster {
        repo,
        dir,
        version,
        instance,
        _file_lock: file_lock,
        _process_lock: process_lock,
    };
    cluster.check_reachable();
    Some(cluster)
}

/// A handle on one running instance (see `cluster()`).
pub struct Cluster {
    repo: PathBuf,
    dir: PathBuf,
    version: Version,
    instance: String,
    _file_lock: FileLock,
    _process_lock: MutexGuard<'static, ()>,
}

impl Cluster {
    pub fn version(&self) -> Version {
        self.version
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The instance's `key=value` facts, written by test-cluster/up.
    pub fn info(&self) -> BTreeMap<String, String> {
        let path = self.dir.join("instance.info");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "BERTH_E2E_SLURM={} but instance '{}' was never brought up ({}: {e}); run test-cluster/up --slurm {} (or unset BERTH_E2E_SLURM to skip the end-to-end tests)",
                self.version.as_str(),
                self.instance,
                path.display(),
                self.version.as_str()
            )
        });
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn info_value(&self, key: &str) -> String {
        self.info().get(key).cloned().unwrap_or_default()
    }

    /// The CPUs slurmd widened its starting cpuset to (Slurm >= 25.05), which `up`
    /// then imposed back; empty when slurmd left it alone.
    pub fn slurmd_widened_cpuset(&self) -> String {
        self.info_value("slurmd_widened_cpuset")
    }

    /// The node names, e.g. ["b0n1", "b0n2"].
    pub fn nodes(&self) -> Vec<String> {
        self.info_value("nodes")
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// A directory at the same absolute path for the test and for the jobs (also in
    /// the 24.11 chroot), writable by everyone: test images and scratch files.
    pub fn shared_dir(&self) -> PathBuf {
        PathBuf::from(self.info_value("shared"))
    }

    /// A directory a site bind can name (`binds=`), the same path for the test and the
    /// jobs; with `shared_mounts` a tmpfs whose mounts propagate to and from the host.
    pub fn site_dir(&self) -> PathBuf {
        PathBuf::from(self.info_value("site"))
    }

    /// The pid of `node`'s slurmd (its /proc/PID/mountinfo is the node's mount view).
    pub fn slurmd_pid(&self, node: &str) -> i32 {
        let path = self.dir.join(format!("pids/slurmd-{node}.started"));
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        text.split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}: {text:?}", path.display()))
    }

    /// The chroot 24.11 runs in (None for 22.05, which runs on the host).
    pub fn root(&self) -> Option<PathBuf> {
        Some(self.info_value("root"))
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
    }

    /// The host path of a path the daemons and jobs see.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        match self.root() {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    /// The path of the plugin as slurmstepd loads it.
    pub fn plugin_path(&self) -> String {
        self.info_value("plugin")
    }

    fn script(&self, name: &str) -> PathBuf {
        self.repo.join("test-cluster").join(name)
    }

    fn check_reachable(&self) {
        let info = self.info();
        if info.get("version").map(String::as_str) != Some(self.version.as_str()) {
            panic!(
                "instance '{}' runs Slurm {:?}, but BERTH_E2E_SLURM={}",
                self.instance,
                info.get("version"),
                self.version.as_str()
            );
        }
        let run = self.client(None, &[], &["sinfo", "-h", "-o", "%T"]);
        if !run.ok() {
            panic!(
                "BERTH_E2E_SLURM={} but instance '{}' is not reachable; bring it up with test-cluster/up --slurm {} (or unset BERTH_E2E_SLURM to skip the end-to-end tests)\n{run}",
                self.version.as_str(),
                self.instance,
                self.version.as_str()
            );
        }
    }

    /// The running configuration, as test-cluster/up recorded it.
    pub fn current_setup(&self) -> Setup {
        let info = self.info();
        let get = |k: &str| info.get(k).cloned().unwrap_or_default();
        Setup {
            nodes: get("nodes").split_whitespace().count() as u8,
            task_plugin: get("task_plugin"),
            plugstack_args: get("plugstack_args"),
            berth: get("berth") == "yes",
            prolog_flags: get("prolog_flags"),
            slurmd_cpuset: get("slurmd_cpuset"),
            slurmd_affinity: get("slurmd_affinity"),
            shared_mounts: get("shared_mounts") == "yes",
        }
    }

    /// Makes the cluster run `setup` with the current build of berth: rewrites
    /// plugstack.conf if only berth's arguments differ (slurmstepd reads it per step),
    /// restarts the cluster for anything else or when berth was rebuilt.
    pub fn ensure(&self, setup: &Setup) {
        let current = self.current_setup();
        if !self.installed_plugin_is_current(setup) {
            eprintln!("berth was rebuilt: restarting the cluster");
            return self.up(setup);
        }
        if current == *setup {
            return;
        }
        let same_but_args = Setup {
            plugstack_args: setup.plugstack_args.clone(),
            ..current
        };
        if same_but_args == *setup && setup.berth {
            self.set_plugstack_args(&setup.plugstack_args);
        } else {
            self.up(setup);
        }
    }

    fn installed_plugin_is_current(&self, setup: &Setup) -> bool {
        if !setup.berth {
            return true;
        }
        let info = self.info();
        let source = match std::env::var("BERTH_E2E_PLUGIN") {
            Ok(p) if !p.is_empty() => p,
            _ => info.get("plugin_source").cloned().unwrap_or_default(),
        };
        let installed = info.get("plugin_host_path").cloned().unwrap_or_default();
        match (fs::read(&source), fs::read(&installed)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// Rewrites berth's plugstack.conf arguments. The next step uses them (slurmstepd
    /// and srun read plugstack.conf per step on 22.05 and 24.11); slurmd keeps its
    /// own until `restart`.
    pub fn set_plugstack_args(&self, args: &str) {
        let run = Run::of(
            Command::new(self.script("set-plugstack"))
                .args(["--instance", &self.instance])
                .arg(args),
        );
        assert!(run.ok(), "set-plugstack failed:\n{run}");
    }

    /// Restarts the cluster with another task plugin and node count (other settings kept).
    pub fn restart_with(&self, task_plugin: &str, nodes: u8) {
        let setup = self.current_setup().task_plugin(task_plugin).nodes(nodes);
        self.up(&setup);
    }

    /// Restarts the cluster as it is (slurmd reloads berth and plugstack.conf).
    pub fn restart(&self) {
        self.up(&self.current_setup());
    }

    /// test-cluster/up with `setup`.
    pub fn up(&self, setup: &Setup) {
        let mut cmd = Command::new(self.script("up"));
        cmd.args(["--instance", &self.instance])
            .args(["--slurm", self.version.as_str()])
            .args(["--nodes", &setup.nodes.to_string()])
            .args(["--task-plugin", &setup.task_plugin])
            .args(["--plugstack-args", &setup.plugstack_args]);
        if !setup.berth {
            cmd.arg("--no-berth");
        }
        if !setup.prolog_flags.is_empty() {
            cmd.args(["--prolog-flags", &setup.prolog_flags]);
        }
        if !setup.slurmd_cpuset.is_empty() {
            cmd.args(["--slurmd-cpuset", &setup.slurmd_cpuset]);
        }
        if !setup.slurmd_affinity.is_empty() {
            cmd.args(["--slurmd-affinity", &setup.slurmd_affinity]);
        }
        if setup.shared_mounts {
            cmd.arg("--shared-mounts");
        }
        if let Ok(plugin) = std::env::var("BERTH_E2E_PLUGIN") {
            if !plugin.is_empty() {
                cmd.args(["--plugin", &plugin]);
            }
        }
        let run = Run::of(&mut cmd);
        assert!(run.ok(), "test-cluster/up failed:\n{run}");
    }

    /// Any Slurm client command, as root (`user` None) or another user, with extra
    /// environment variables, killed after CLIENT_TIMEOUT_SECS.
    pub fn client(&self, user: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.client_command(user, env, args);
        Run::of(&mut cmd)
    }

    /// The command `client` runs, not started: for a step that runs in the background
    /// while the test does something else (spawn it, then wait for or kill the child).
    pub fn client_command(
        &self,
        user: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Command {
        let mut cmd = Command::new(self.script("client"));
        cmd.args(["--instance", &self.instance])
            .args(["--timeout", &CLIENT_TIMEOUT_SECS.to_string()])
            .args(["--cwd", &self.info_value("shared")]);
        if let Some(user) = user {
            cmd.args(["--user", user]);
        }
        for (k, v) in env {
            cmd.args(["--env", &format!("{k}={v}")]);
        }
        cmd.arg("--").args(args);
        cmd
    }

    /// `srun ARGS` as root.
    pub fn srun(&self, args: &[&str]) -> Run {
        self.srun_as_with_env(None, &[], args)
    }

    /// `srun ARGS` as `user`.
    pub fn srun_as(&self, user: &str, args: &[&str]) -> Run {
        self.srun_as_with_env(Some(user), &[], args)
    }

    pub fn srun_as_with_env(&self, user: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut all = vec!["srun"];
        all.extend_from_slice(args);
        self.client(user, env, &all)
    }

    /// Submits `script` with `sbatch --wait` (as root, or `user`) and returns when the
    /// job has ended, with its output (written to the shared directory).
    pub fn sbatch_wait(&self, user: Option<&str>, script: &str, args: &[&str]) -> BatchJob {
        let shared = self.shared_dir();
        let name = format!("batch-{}-{}", std::process::id(), unique());
        let script_path = shared.join(format!("{name}.sh"));
        let output_path = shared.join(format!("{name}.out"));
        fs::write(&script_path, script).expect("write the batch script");
        let output_arg = format!("--output={}", output_path.display());
        let script_arg = script_path.display().to_string();
        let mut all = vec!["sbatch", "--wait", "--parsable", &output_arg];
        all.extend_from_slice(args);
        all.push(&script_arg);
        let run = self.client(user, &[], &all);
        let job_id = run
            .stdout
            .lines()
            .find_map(|l| l.split(';').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no job id from sbatch:\n{run}"));
        let output = fs::read_to_string(&output_path).unwrap_or_default();
        BatchJob {
            job_id,
            run,
            output,
        }
    }

    /// Submits `script` with sbatch (as root, or `user`) and returns its job id at once;
    /// the output goes to the shared directory.
    pub fn sbatch_no_wait(&self, user: Option<&str>, script: &str, args: &[&str]) -> u32 {
        let shared = self.shared_dir();
        let name = format!("batch-{}-{}", std::process::id(), unique());
        let script_path = shared.join(format!("{name}.sh"));
        fs::write(&script_path, script).expect("write the batch script");
        let output_arg = format!("--output={}", shared.join(format!("{name}.out")).display());
        let script_arg = script_path.display().to_string();
        let mut all = vec!["sbatch", "--parsable", &output_arg];
        all.extend_from_slice(args);
        all.push(&script_arg);
        let run = self.client(user, &[], &all);
        run.stdout
            .lines()
            .find_map(|l| l.split(';').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no job id from sbatch:\n{run}"))
    }

    /// Runs a step and reports, per task, its CPU affinity and cgroups.
    pub fn tasks(&self, user: Option<&str>, srun_args: &[&str]) -> (Run, Vec<TaskView>) {
        let mut all = vec!["-l"];
        all.extend_from_slice(srun_args);
        all.extend_from_slice(&[
            "/bin/sh",
            "-c",
            "grep ^Cpus_allowed_list: /proc/self/status; cat /proc/self/cgroup",
        ]);
        let run = self.srun_as_with_env(user, &[], &all);
        let tasks = parse_task_views(&run.stdout);
        (run, tasks)
    }

    fn log_files(&self) -> Vec<PathBuf> {
        let logs = PathBuf::from(self.info_value("log_dir"));
        self.nodes()
            .iter()
            .map(|n| logs.join(format!("slurmd-{n}.log")))
            .collect()
    }

    /// The whole slurmd log of `node` (slurmstepd writes to it too).
    pub fn slurmd_log(&self, node: &str) -> String {
        let logs = PathBuf::from(self.info_value("log_dir"));
        fs::read_to_string(logs.join(format!("slurmd-{node}.log"))).unwrap_or_default()
    }

    /// slurmctld's log.
    pub fn slurmctld_log(&self) -> String {
        let logs = PathBuf::from(self.info_value("log_dir"));
        fs::read_to_string(logs.join("slurmctld.log")).unwrap_or_default()
    }

    /// Waits until no job is pending, running or completing (an earlier test's job may
    /// still be ending), then notes where every node's slurmd log ends.
    pub fn mark(&self) -> LogMark {
        let start = Instant::now();
        loop {
            let run = self.client(None, &[], &["squeue", "-h", "-t", "PD,R,CG", "-o", "%A"]);
            if run.ok() && run.stdout.trim().is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "jobs still there after 30 s:\n{run}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        LogMark {
            offsets: self
                .log_files()
                .into_iter()
                .map(|p| {
                    let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    (p, len)
                })
                .collect(),
        }
    }

    /// What the slurmd logs (all nodes, one after the other) gained since `mark`.
    pub fn log_since(&self, mark: &LogMark) -> String {
        let mut text = String::new();
        for (path, offset) in &mark.offsets {
            let Ok(mut f) = fs::File::open(path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*offset)).is_ok() {
                let _ = f.read_to_string(&mut text);
            }
        }
        text
    }

    /// Polls the slurmd logs since `mark` until `done` holds (slurmstepd may still be
    /// running its last hooks when srun returns); panics after `timeout`.
    #[track_caller]
    pub fn wait_for_log(
        &self,
        mark: &LogMark,
        timeout: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let text = self.log_since(mark);
            if done(&text) {
                return text;
            }
            if start.elapsed() > timeout {
                panic!("waited {timeout:?} for {what} in the slurmd logs; they gained:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until slurmstepd of `job.step` logged berth's `exit` hook, and returns
    /// the log since `mark` (needs `log_hooks=yes`).
    #[track_caller]
    pub fn wait_for_step_end(&self, mark: &LogMark, job: u32, step: &str) -> String {
        let label = format!("{job}.{step}");
        self.wait_for_log(
            mark,
            Duration::from_secs(15),
            &format!("berth's exit hook of step {label}"),
            |text| {
                hook_lines(text)
                    .iter()
                    .any(|h| h.step_label() == label && h.hook == "exit" && h.context == "remote")
            },
        )
    }
}

fn unique() -> u128 {
    static NEXT: Mutex<u128> = Mutex::new(0);
    let mut n = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    *n += 1;
    *n
}

/// An exclusive flock(2) on a file, released when dropped (or when the process dies).
/// An exclusive flock held until dropped (creates the file and its directory).
pub struct FileLock(fs::File);

impl FileLock {
    pub fn acquire(path: &Path) -> FileLock {
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: flock on a descriptor this File owns; released when it is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        FileLock(file)
    }
}

/// Parses `srun -l` output of `grep ^Cpus_allowed_list: /proc/self/status; cat
/// /proc/self/cgroup`, one TaskView per rank, ordered by rank.
pub fn parse_task_views(stdout: &str) -> Vec<TaskView> {
    let mut tasks: BTreeMap<u32, TaskView> = BTreeMap::new();
    for line in stdout.lines() {
        let Some((rank, rest)) = line.split_once(": ") else {
            continue;
        };
        let Ok(rank) = rank.trim().parse::<u32>() else {
            continue;
        };
        let task = tasks.entry(rank).or_insert_with(|| TaskView {
            rank,
            cpus_allowed: String::new(),
            cgroups: BTreeMap::new(),
        });
        if let Some(list) = rest.strip_prefix("Cpus_allowed_list:") {
            task.cpus_allowed = list.trim().to_string();
        } else if let Some((controllers, path)) = parse_cgroup_line(rest) {
            for c in controllers.split(',') {
                let c = c.strip_prefix("name=").unwrap_or(c);
                task.cgroups.insert(c.to_string(), path.to_string());
            }
        }
    }
    tasks.into_values().collect()
}

/// One /proc/PID/cgroup line, "ID:CONTROLLERS:PATH" -> (CONTROLLERS, PATH).
pub fn parse_cgroup_line(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.trim().splitn(3, ':');
    let id = parts.next()?;
    id.parse::<u32>().ok()?;
    Some((parts.next()?, parts.next()?))
}

/// Expands a CPU list like "0-2,5" into its members.
pub fn cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// One `log_hooks=yes` line:
/// `berth: job <J>.<S>: hook <hook> in <context>: uid=<U> gid=<G> job_cores=<list>
/// step_cores=<list> local_tasks=<N>` (the `job J.S: ` part is absent before Slurm
/// knows the job, e.g. srun's init, and in slurmd's own context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookLine {
    pub job: Option<String>,
    pub step: Option<String>,
    pub hook: String,
    pub context: String,
    pub uid: String,
    pub gid: String,
    pub job_cores: String,
    pub step_cores: String,
    pub local_tasks: String,
}

impl HookLine {
    /// "J.S", or "" when the line names no job.
    pub fn step_label(&self) -> String {
        match (&self.job, &self.step) {
            (Some(j), Some(s)) => format!("{j}.{s}"),
            _ => String::new(),
        }
    }
}

/// Parses the berth part of a hook line (anything before `berth: ` is ignored).
/// Err: the line is a hook line of the wrong format.
pub fn parse_hook_line(line: &str) -> Result<HookLine, String> {
    let bad = |why: &str| Err(format!("{why}: {line:?}"));
    let Some(start) = line.find("berth: ") else {
        return bad("no 'berth: '");
    };
    let mut rest = &line[start + "berth: ".len()..];
    let (mut job, mut step) = (None, None);
    if let Some(r) = rest.strip_prefix("job ") {
        let Some((label, r)) = r.split_once(": ") else {
            return bad("no ': ' after the job label");
        };
        let Some((j, s)) = label.split_once('.') else {
            return bad("job label is not J.S");
        };
        if j.parse::<u32>().is_err()
            || !(s.parse::<u32>().is_ok() || ["batch", "extern", "interactive"].contains(&s))
        {
            return bad("job label is not J.S with a number or batch/extern/interactive");
        }
        job = Some(j.to_string());
        step = Some(s.to_string());
        rest = r;
    }
    let Some(r) = rest.strip_prefix("hook ") else {
        return bad("no 'hook '");
    };
    let Some((hook, r)) = r.split_once(" in ") else {
        return bad("no ' in '");
    };
    let Some((context, r)) = r.split_once(": ") else {
        return bad("no ': ' after the context");
    };
    let fields: Vec<&str> = r.trim_end().split(' ').collect();
    let keys = ["uid", "gid", "job_cores", "step_cores", "local_tasks"];
    if fields.len() != keys.len() {
        return bad("not exactly uid gid job_cores step_cores local_tasks");
    }
    let mut values = Vec::new();
    for (field, key) in fields.iter().zip(keys) {
        match field.split_once('=') {
            Some((k, v)) if k == key && !v.is_empty() => values.push(v.to_string()),
            _ => return bad(&format!("expected {key}=<value>, found {field:?}")),
        }
    }
    Ok(HookLine {
        job,
        step,
        hook: hook.to_string(),
        context: context.to_string(),
        uid: values[0].clone(),
        gid: values[1].clone(),
        job_cores: values[2].clone(),
        step_cores: values[3].clone(),
        local_tasks: values[4].clone(),
    })
}

/// Every berth hook line in `text` (a log, or srun's stderr). Panics on a line that
/// looks like a hook line but does not have the documented format.
#[track_caller]
pub fn hook_lines(text: &str) -> Vec<HookLine> {
    text.lines()
        .filter(|l| l.contains("berth: ") && l.contains("hook ") && l.contains(" in "))
        .map(|l| parse_hook_line(l).unwrap_or_else(|e| panic!("malformed berth hook line: {e}")))
        .collect()
}
