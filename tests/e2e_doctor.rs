//! End-to-end: `berth doctor --json` on the test cluster, in each conflict
//! scenario of the reconcile issue, agrees with what the step then does.
//!
//! Where doctor runs: as on the node. For 22.05 the node is this host; for 24.11
//! it is the instance's chroot, so doctor runs inside it (`chroot ROOT berth
//! doctor`): there it sees the chroot's slurm.conf paths, plugin path, scontrol
//! and /etc, and, through the chroot's /proc, /sys and cgroup mounts, the same
//! processes, topology and cpuset hierarchy as slurmstepd.
//!
//! Scenarios (each one sets itself up and leaves the cluster for the next test
//! to restart): no conflict; slurmd in an external cpuset {0} with a step on
//! CPUs 0-1 (partial overlap) and with a job on CPU 1 only (disjoint, via
//! `--job`); the same under cpuset_policy=strict; slurmd with a narrowed
//! affinity; a real cgrulesengd with a rule for user berthrule (on 24.11 the
//! host's rules, socket and user are made visible in the chroot, as they would
//! be on a real node); a broken plugstack.conf line.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Cluster, Run, Setup};

/// The external cpuset these tests start slurmd in (CPU 0, memory node 0).
const EXT_CPUSET: &str = "berth-doctor-ext";
/// cgrulesengd's destination for berthrule (CPU 0, memory node 0).
const RULE_CPUSET: &str = "berth-doctor-users";
const RULE_USER: &str = "berthrule";
const RULE_UID: u32 = 5002;
const CGROUP_CPUSET: &str = "/sys/fs/cgroup/cpuset";

/// `berth doctor --json ARGS` run as on the cluster's node; its exit code and JSON.
fn doctor(cluster: &Cluster, args: &[&str]) -> (Run, Value) {
    let info = cluster.info();
    let conf = info["slurm_conf"].clone();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let mut cmd = match cluster.root() {
        None => Command::new(&binary),
        Some(root) => {
            // The same absolute path inside the chroot (the shared directory).
            let inside = cluster.shared_dir().join("berth-doctor");
            fs::copy(&binary, &inside).expect("copy berth into the shared directory");
            let mut c = Command::new("chroot");
            c.arg(root)
                .args(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
            c.arg(inside);
            c
        }
    };
    cmd.args(["doctor", "--json", "--slurm-conf", &conf])
        .args(args);
    let text = format!("{cmd:?}");
    let out = cmd.output().expect("run berth doctor");
    let run = Run {
        cmd: text,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("{run}");
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("berth doctor printed no JSON ({e}):\n{run}"));
    (run, json)
}

/// A cpuset cgroup at the top of the v1 hierarchy holding CPU 0 and memory node
/// 0; left in place (slurmd may still be inside; the next `up` moves it out).
fn make_cpuset(name: &str) {
    let dir = Path::new(CGROUP_CPUSET).join(name);
    if !dir.is_dir() {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(dir.join("cpuset.cpus"), "0").expect("cpuset.cpus");
    fs::write(dir.join("cpuset.mems"), "0").expect("cpuset.mems");
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
}

fn conflict_kinds(report: &Value) -> Vec<String> {
    report
        .pointer("/dry_run/plan/conflicts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| c["kind"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// berth's log line for a step, from slurmd's log: a `berth: job J.S: ` line
/// that ends with `message`.
fn has_berth_line(log: &str, message: &str) -> bool {
    log.lines()
        .any(|l| l.contains("berth: job ") && l.trim_end().ends_with(message))
}

/// Runs `srun ARGS` and returns it with slurmd's log since just before, once
/// the step's berth line (`message`) is there.
fn step_and_log(cluster: &Cluster, user: &str, args: &[&str], message: &str) -> (Run, String) {
    let mark = cluster.mark();
    let run = cluster.srun_as(user, args);
    let log = cluster.wait_for_log(&mark, Duration::from_secs(15), message, |t| {
        has_berth_line(t, message)
    });
    (run, log)
}

fn cpus_of_tasks(run: &Run) -> Vec<String> {
    support::parse_task_views(&run.stdout)
        .into_iter()
        .map(|t| t.cpus_allowed)
        .collect()
}

const SHOW_PLACEMENT: &[&str] = &[
    "-l",
    "-n2",
    "/bin/sh",
    "-c",
    "grep ^Cpus_allowed_list: /proc/self/status; cat /proc/self/cgroup",
];

#[test]
fn no_conflict_reports_none_and_exits_0() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    cluster.ensure(&Setup::default());
    let (run, r) = doctor(&cluster, &["--user", support::TEST_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(r["status"], "ok");
    assert!(conflict_kinds(&r).is_empty());
    assert_eq!(str_of(&r, "/dry_run/without_berth/outcome"), "fine");
    assert_eq!(str_of(&r, "/dry_run/with_berth/outcome"), "fine");
    assert_eq!(r["dry_run"]["expected_log"], Value::Null);
    assert_eq!(
        str_of(&r, "/slurm/task_plugin"),
        "task/affinity,task/cgroup"
    );
    assert_eq!(r["slurm"]["berth_lines"][0]["error"], Value::Null);
    assert_eq!(str_of(&r, "/berth"), "active, cpuset_policy=shares");
    assert!(r["node"]["slurmd_pid"].is_number());
    assert_eq!(r["node"]["name"], cluster.nodes()[0].as_str());
    let cores = r["topology"]["cores"].as_u64().unwrap();
    assert_eq!(
        r["topology"]["core_cpus"].as_array().unwrap().len() as u64,
        cores
    );
    // The step agrees: it runs, each task on CPUs of the allocation.
    let (run, tasks) = cluster.tasks(Some(support::TEST_USER), &["-n2"]);
    run.assert_ok();
    assert_eq!(tasks.len(), 2);
}

#[test]
fn a_broken_berth_line_is_reported_with_its_error_and_exit_2() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    cluster.ensure(&Setup::default().plugstack_args("cpuset_policy=bogus"));
    let (run, r) = doctor(&cluster, &[]);
    assert_eq!(run.code, Some(2), "{run}");
    assert_eq!(r["status"], "fails");
    let error = str_of(&r, "/slurm/berth_lines/0/error");
    assert!(
        error.ends_with(
            "invalid argument 'cpuset_policy=bogus': accepted values: shares, widen, strict, off"
        ),
        "{error}"
    );
    assert!(str_of(&r, "/berth").starts_with("inactive: "), "{r:#}");
    let problems = r["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p
            .as_str()
            .unwrap()
            .contains("berth's plugstack.conf line is broken")),
        "{problems:?}"
    );
    // The plugin reports the same argument and reason in slurmd's log.
    let mark = cluster.mark();
    cluster.srun(&["true"]).assert_ok();
    cluster.wait_for_log(&mark, Duration::from_secs(15), "berth's config error", |t| {
        t.contains("invalid plugstack.conf argument 'cpuset_policy=bogus': accepted values: shares, widen, strict, off; berth is inactive on this node until it is fixed")
    });
}

/// slurmd in cpuset {0}, task/affinity only: a 2-task step on CPUs 0-1 only
/// partly overlaps it. Stock Slurm fails; berth (shares) reconciles.
#[test]
fn slurmd_in_an_external_cpuset_partial_overlap() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    make_cpuset(EXT_CPUSET);
    cluster.ensure(
        &Setup::default()
            .task_plugin("affinity")
            .slurmd_cpuset(EXT_CPUSET),
    );
    let (run, r) = doctor(&cluster, &["--user", support::TEST_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(r["status"], "reconciled");
    let slurmd_cpuset = r["constraints"]["slurmd_cpuset"].as_array().unwrap();
    let leaf = slurmd_cpuset.last().unwrap();
    assert_eq!(leaf["group"]["path"], format!("/{EXT_CPUSET}"));
    assert_eq!(leaf["cpuset"]["effective_cpus"], "0");
    assert_eq!(str_of(&r, "/constraints/slurmd_affinity"), "0");
    let c = &r["dry_run"]["plan"]["conflicts"][0];
    assert_eq!(c["kind"], "cpuset");
    assert_eq!(c["group"]["path"], format!("/{EXT_CPUSET}"));
    assert_eq!(c["missing_cpus"], "1");
    assert_eq!(str_of(&r, "/dry_run/without_berth/outcome"), "fails");
    assert!(str_of(&r, "/dry_run/without_berth/reason").contains("task_g_set_affinity"));
    assert_eq!(str_of(&r, "/dry_run/with_berth/outcome"), "fine");
    let expected = str_of(&r, "/dry_run/expected_log").to_string();
    assert!(
        expected.starts_with("cpuset conflict: slurmd's cpuset"),
        "{expected}"
    );
    // The step: berth logs exactly the dry run's line, and both tasks run, one per CPU.
    let (run, _) = step_and_log(&cluster, support::TEST_USER, SHOW_PLACEMENT, &expected);
    run.assert_ok();
    let mut cpus = cpus_of_tasks(&run);
    cpus.sort();
    assert_eq!(cpus, vec!["0", "1"], "{run}");
}

/// Two single-core batch jobs: one gets core 0 (inside the cpuset), the other
/// core 1 (disjoint). `--job` reads each from Slurm; only the second conflicts,
/// and its berth line in slurmd's log is the dry run's.
#[test]
fn slurmd_in_an_external_cpuset_disjoint_job() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    make_cpuset(EXT_CPUSET);
    cluster.ensure(
        &Setup::default()
            .task_plugin("affinity")
            .slurmd_cpuset(EXT_CPUSET),
    );
    let mark = cluster.mark();
    let jobs: Vec<String> = (0..2)
        .map(|_| {
            let run = cluster.client(
                Some(support::TEST_USER),
                &[],
                &[
                    "sbatch",
                    "--parsable",
                    "-n1",
                    "--output=/dev/null",
                    "--wrap",
                    "sleep 60",
                ],
            );
            run.assert_ok();
            run.stdout.trim().split(';').next().unwrap().to_string()
        })
        .collect();
    let cancel = Cancel(&cluster, jobs.clone());
    // Both batch steps started (berth's hook lines show them).
    for job in &jobs {
        let label = format!("berth: job {job}.batch: hook user_init");
        cluster.wait_for_log(&mark, Duration::from_secs(30), &label, |t| {
            t.contains(&label)
        });
    }
    let reports: Vec<(Run, Value)> = jobs
        .iter()
        .map(|j| doctor(&cluster, &["--job", j]))
        .collect();
    let on_core = |core: &str| {
        reports
            .iter()
            .find(|(_, r)| r["job"]["cores"] == core)
            .unwrap_or_else(|| panic!("no job on core {core}"))
    };
    let (run0, r0) = on_core("0");
    assert_eq!(run0.code, Some(0), "{run0}");
    assert!(conflict_kinds(r0).is_empty());
    let (run1, r1) = on_core("1");
    assert_eq!(run1.code, Some(1), "{run1}");
    assert_eq!(r1["job"]["user"], support::TEST_USER);
    assert_eq!(r1["dry_run"]["user"]["user"], support::TEST_USER);
    assert_eq!(r1["dry_run"]["allocation"]["cpus"], "1");
    assert!(str_of(r1, "/dry_run/allocation_from").starts_with("job "));
    assert_eq!(conflict_kinds(r1), vec!["cpuset", "affinity"]);
    // The job's batch step already ran berth, whose own changes (the cpu group it
    // weighed) now show in the facts: compare the conflicts, and the first action.
    let expected = str_of(r1, "/dry_run/expected_log");
    let (conflicts, _) = expected.split_once("; cpuset_policy=").unwrap();
    let lines: Vec<&str> = r1["logs"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let logged = format!("{conflicts}; cpuset_policy=shares: moved the step to cpuset:/, ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!(".batch: {logged}"))),
        "doctor's log lines for the job lack {logged:?}: {lines:#?}"
    );
    drop(cancel);
}

/// Cancels jobs when dropped (also when an assertion failed) and waits until
/// they are gone, so that their steps' undo does not change the next test's facts.
struct Cancel<'a>(&'a Cluster, Vec<String>);

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        let ids = self.1.join(",");
        self.0.client(None, &[], &["scancel", &ids]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let run = self
                .0
                .client(None, &[], &["squeue", "-h", "-j", &ids, "-o", "%i"]);
            if run.stdout.trim().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("jobs {ids} still listed 30 s after scancel");
    }
}

/// The same cpuset under cpuset_policy=strict: doctor says the step fails
/// (exit 2); the step fails and the user sees the cause on srun's stderr.
#[test]
fn strict_policy_with_a_conflict_fails_with_the_cause_on_srun() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    make_cpuset(EXT_CPUSET);
    cluster.ensure(
        &Setup::default()
            .task_plugin("affinity")
            .slurmd_cpuset(EXT_CPUSET)
            .plugstack_args("log_hooks=yes cpuset_policy=strict"),
    );
    let (run, r) = doctor(&cluster, &["--user", support::TEST_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(2), "{run}");
    assert_eq!(str_of(&r, "/dry_run/with_berth/outcome"), "fails");
    let expected = str_of(&r, "/dry_run/expected_log").to_string();
    assert!(
        expected.starts_with("cpuset_policy=strict: this node imposes a cpuset outside Slurm"),
        "{expected}"
    );
    let (run, _) = step_and_log(
        &cluster,
        support::TEST_USER,
        &["-n2", "echo", "RAN"],
        &expected,
    );
    assert!(!run.timed_out(), "{run}");
    assert!(!run.stdout.contains("RAN"), "the step ran:\n{run}");
    assert!(
        run.stderr
            .contains("cpuset_policy=strict: this node imposes a cpuset outside Slurm"),
        "srun's stderr lacks the cause:\n{run}"
    );
}

/// slurmd's threads narrowed to CPU 0 with taskset (no cpuset): berth resets
/// the affinity; doctor predicts the line.
#[test]
fn slurmd_with_a_narrowed_affinity() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    cluster.ensure(&Setup::default().task_plugin("cgroup"));
    let narrowed = NarrowedSlurmd::new(&cluster);
    let (run, r) = doctor(&cluster, &["--user", support::TEST_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(str_of(&r, "/constraints/slurmd_affinity"), "0");
    assert_eq!(conflict_kinds(&r), vec!["affinity"]);
    assert_eq!(r["dry_run"]["plan"]["conflicts"][0]["missing_cpus"], "1");
    // task/cgroup alone keeps the narrow mask on kernels >= 6.2.
    let keeps = r["node"]["kernel_keeps_affinity"].as_bool().unwrap();
    let stock = str_of(&r, "/dry_run/without_berth/outcome");
    assert_eq!(stock, if keeps { "wrong_cpus" } else { "fine" });
    assert_eq!(str_of(&r, "/dry_run/with_berth/outcome"), "fine");
    let expected = str_of(&r, "/dry_run/expected_log").to_string();
    let (run, _) = step_and_log(&cluster, support::TEST_USER, SHOW_PLACEMENT, &expected);
    run.assert_ok();
    // task/cgroup binds no task: each runs on the whole allocation, not on slurmd's CPU 0.
    assert_eq!(cpus_of_tasks(&run), vec!["0-1", "0-1"], "{run}");
    drop(narrowed);
}

/// slurmd's affinity narrowed to CPU 0 (every thread), restored when dropped.
struct NarrowedSlurmd {
    pid: String,
    all: String,
}

impl NarrowedSlurmd {
    fn new(cluster: &Cluster) -> NarrowedSlurmd {
        let node = &cluster.nodes()[0];
        let pid_file = Path::new(&cluster.info()["dir"]).join(format!("pids/slurmd-{node}.pid"));
        let pid = fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
            .trim()
            .to_string();
        let all = fs::read_to_string("/sys/devices/system/cpu/online")
            .unwrap()
            .trim()
            .to_string();
        taskset(&pid, "0");
        NarrowedSlurmd { pid, all }
    }
}

impl Drop for NarrowedSlurmd {
    fn drop(&mut self) {
        taskset(&self.pid, &self.all);
    }
}

fn taskset(pid: &str, cpus: &str) {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, pid])
        .output()
        .expect("taskset");
    assert!(
        out.status.success(),
        "taskset -a -p -c {cpus} {pid}: {out:?}"
    );
}

/// A real cgrulesengd with the rule `berthrule cpuset berth-doctor-users/`.
#[test]
fn a_cgrulesengd_rule_for_the_user() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    cluster.ensure(&Setup::default());
    make_cpuset(RULE_CPUSET);
    let daemon = Cgred::start(&format!("{RULE_USER} cpuset {RULE_CPUSET}/\n"));
    // 24.11's node is a chroot: give it the host's rules, socket and user (see NodeView).
    let view = cluster.root().map(|root| NodeView::new(&root));
    let (run, r) = doctor(&cluster, &["--user", RULE_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(r["dry_run"]["user"]["uid"], RULE_UID);
    assert!(r["constraints"]["cgrules"]["daemon_pids"]
        .as_array()
        .unwrap()
        .contains(&Value::from(daemon.pid())));
    assert_eq!(r["constraints"]["cgrules"]["rules"][0]["user"], RULE_USER);
    assert_eq!(conflict_kinds(&r), vec!["rule"]);
    let c = &r["dry_run"]["plan"]["conflicts"][0];
    assert_eq!(c["group"]["path"], format!("/{RULE_CPUSET}"));
    assert_eq!(c["line"], 1);
    assert_eq!(c["missing_cpus"], "1");
    assert_eq!(str_of(&r, "/dry_run/without_berth/outcome"), "wrong_cpus");
    assert_eq!(str_of(&r, "/dry_run/with_berth/outcome"), "fine");
    assert_eq!(
        r["dry_run"]["plan"]["actions"][0]["action"],
        "register_with_cgred"
    );
    let expected = str_of(&r, "/dry_run/expected_log").to_string();
    let (run, _) = step_and_log(&cluster, RULE_USER, SHOW_PLACEMENT, &expected);
    run.assert_ok();
    for task in support::parse_task_views(&run.stdout) {
        assert_ne!(task.cgroup("cpuset"), format!("/{RULE_CPUSET}"), "{run}");
    }
    let mut cpus = cpus_of_tasks(&run);
    cpus.sort();
    assert_eq!(cpus, vec!["0", "1"], "{run}");
    drop(view);
    drop(daemon);
}

const CGRED_SOCKET: &str = "/run/cgred.socket";
const CGRULES: &str = "/etc/cgrules.conf";

/// A cgrulesengd of this test with its rules; on drop: stopped (by its pid),
/// its socket removed, /etc/cgrules.conf restored.
struct Cgred {
    child: Child,
    saved_rules: Option<String>,
}

impl Cgred {
    fn start(rules: &str) -> Cgred {
        wait_for_no_other_cgrulesengd();
        // cgrulesengd (libcgroup 2.0.2) exits without these.
        fs::create_dir_all("/etc/cgconfig.d").unwrap();
        if !Path::new("/etc/cgconfig.conf").exists() {
            fs::write("/etc/cgconfig.conf", "").unwrap();
        }
        let saved_rules = fs::read_to_string(CGRULES).ok();
        fs::write(CGRULES, rules).unwrap();
        let _ = fs::remove_file(CGRED_SOCKET); // a stale one left by a dead daemon
        let child = Command::new("cgrulesengd")
            .args(["-n", "-f", "/tmp/berth-doctor-cgrulesengd.log"])
            .spawn()
            .expect("start cgrulesengd");
        let start = Instant::now();
        while !Path::new(CGRED_SOCKET).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "cgrulesengd made no socket in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cgred { child, saved_rules }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Cgred {
    fn drop(&mut self) {
        // SAFETY: signals the daemon this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = fs::remove_file(CGRED_SOCKET);
        match &self.saved_rules {
            Some(text) => fs::write(CGRULES, text).unwrap(),
            None => {
                let _ = fs::remove_file(CGRULES);
            }
        }
    }
}

/// What the 24.11 chroot needs to see of the host's cgrulesengd: the same
/// /etc/cgrules.conf, the daemon's socket (bind-mounted), and the rule's user
/// with the same uid. The chroot's overlay is made afresh by every `up`; the
/// bind mount is undone when dropped.
struct NodeView {
    socket: PathBuf,
}

impl NodeView {
    fn new(root: &Path) -> NodeView {
        fs::copy(CGRULES, root.join("etc/cgrules.conf"))
            .expect("copy cgrules.conf into the chroot");
        let has_user = Command::new("chroot")
            .arg(root)
            .args(["getent", "passwd", RULE_USER])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_user {
            let uid = RULE_UID.to_string();
            let out = Command::new("chroot")
                .arg(root)
                .args([
                    "useradd", "-u", &uid, "-U", "-M", "-s", "/bin/sh", RULE_USER,
                ])
                .output()
                .expect("useradd in the chroot");
            assert!(
                out.status.success(),
                "useradd {RULE_USER} in the chroot: {out:?}"
            );
        }
        let socket = root.join(CGRED_SOCKET.trim_start_matches('/'));
        fs::write(&socket, "").expect("mount point for the socket");
        let out = Command::new("mount")
            .args(["--bind", CGRED_SOCKET])
            .arg(&socket)
            .output()
            .expect("mount --bind the socket");
        assert!(out.status.success(), "bind-mount {CGRED_SOCKET}: {out:?}");
        NodeView { socket }
    }
}

impl Drop for NodeView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.socket).status();
        let _ = fs::remove_file(&self.socket);
    }
}

/// Only one cgrulesengd can own /run/cgred.socket: wait (up to 5 min) while
/// another one (another engineer's test) runs.
fn wait_for_no_other_cgrulesengd() {
    let start = Instant::now();
    loop {
        let others = berth::doctor::constraints::pids_named("cgrulesengd");
        if others.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "another cgrulesengd (pids {others:?}) has run for 5 minutes; this test needs its own"
        );
        eprintln!("waiting for cgrulesengd {others:?} (someone else's) to end");
        std::thread::sleep(Duration::from_secs(2));
    }
}
