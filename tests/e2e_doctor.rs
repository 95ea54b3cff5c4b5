//! End-to-end: `berth doctor --json` on the test cluster, in each conflict
//! scenario of the reconcile issue, agrees with what the step then does.
//!
//! Where doctor runs: as on the node. For 22.05 the node is this host; for 24.11
//! it is the instance's chroot, so doctor runs inside it (`chroot ROOT berth
//! doctor`): there it sees the chroot's slurm.conf paths, plugin path, scontrol
//! and /etc, and, through the chroot's /proc, /sys and cgroup mounts, the same
//! processes, topology and cpuset hierarchy as slurmstepd.
//!
//! Scenarios (each one sets itself up with `tests/support/scenarios.rs` and
//! leaves the cluster for the next test to restart): no conflict; slurmd in an
//! external cpuset {0} with a step on CPUs 0-1 (partial overlap) and with a job
//! on CPU 1 only (disjoint, via `--job`); the same under cpuset_policy=strict;
//! slurmd started under taskset on CPU 0; a real cgrulesengd with a rule for
//! user berthrule (on 24.11 its rules and socket are also put in the chroot, as
//! they would be on a real node); a broken plugstack.conf line.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::scenarios::{external_name, Cgrulesengd, ExternalCpuset, Rule, RULE_UID, RULE_USER};
use support::{Cluster, Run, Setup};

/// The external cpuset of a test (CPU 0, memory node 0), for slurmd or a rule.
fn external_cpuset(cluster: &Cluster, what: &str) -> ExternalCpuset {
    ExternalCpuset::create(&external_name(cluster, &format!("doctor-{what}")), "0", "0")
}

/// Restarts slurmd outside the external cpuset, so that the cpuset can be removed.
fn leave_the_cpuset(cluster: &Cluster) {
    cluster.ensure(&Setup::default());
}

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
    let run = Run::of(&mut cmd);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("berth doctor printed no JSON ({e}):\n{run}"));
    (run, json)
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
    let ext = external_cpuset(&cluster, "partial");
    cluster.ensure(
        &Setup::default()
            .task_plugin("affinity")
            .slurmd_cpuset(ext.name()),
    );
    let (run, r) = doctor(&cluster, &["--user", support::TEST_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(r["status"], "reconciled");
    let slurmd_cpuset = r["constraints"]["slurmd_cpuset"].as_array().unwrap();
    let leaf = slurmd_cpuset.last().unwrap();
    assert_eq!(leaf["group"]["path"], ext.path());
    assert_eq!(leaf["cpuset"]["effective_cpus"], "0");
    assert_eq!(str_of(&r, "/constraints/slurmd_affinity"), "0");
    let c = &r["dry_run"]["plan"]["conflicts"][0];
    assert_eq!(c["kind"], "cpuset");
    assert_eq!(c["group"]["path"], ext.path());
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
    leave_the_cpuset(&cluster);
}

/// Two single-core batch jobs: one gets core 0 (inside the cpuset), the other
/// core 1 (disjoint). `--job` reads each from Slurm; only the second conflicts,
/// and its berth line in slurmd's log is the dry run's.
#[test]
fn slurmd_in_an_external_cpuset_disjoint_job() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    let ext = external_cpuset(&cluster, "disjoint");
    cluster.ensure(
        &Setup::default()
            .task_plugin("affinity")
            .slurmd_cpuset(ext.name()),
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
    leave_the_cpuset(&cluster);
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
    let ext = external_cpuset(&cluster, "strict");
    cluster.ensure(
        &Setup::default()
            .task_plugin("affinity")
            .slurmd_cpuset(ext.name())
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
    leave_the_cpuset(&cluster);
}

/// slurmd started under `taskset -c 0` (no cpuset): berth resets the affinity;
/// doctor predicts the line.
#[test]
fn slurmd_with_a_narrowed_affinity() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    cluster.ensure(&Setup::default().task_plugin("cgroup").slurmd_affinity("0"));
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
}

/// A real cgrulesengd with the rule `berthrule cpuset <external cpuset>/`.
#[test]
fn a_cgrulesengd_rule_for_the_user() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    cluster.ensure(&Setup::default());
    let ext = external_cpuset(&cluster, "rule");
    // On 24.11 the daemon's rules and socket are also put in the chroot.
    let mut daemon =
        Cgrulesengd::start(&[Rule::cpuset(RULE_USER, &ext)], cluster.root().as_deref());
    let daemon_pid = daemon.pid().expect("cgrulesengd runs");
    let (run, r) = doctor(&cluster, &["--user", RULE_USER, "--cores", "0-1"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(r["dry_run"]["user"]["uid"], RULE_UID);
    assert!(r["constraints"]["cgrules"]["daemon_pids"]
        .as_array()
        .unwrap()
        .contains(&Value::from(daemon_pid)));
    assert_eq!(r["constraints"]["cgrules"]["socket_state"], "listening");
    assert_eq!(r["constraints"]["cgrules"]["rules"][0]["user"], RULE_USER);
    assert_eq!(conflict_kinds(&r), vec!["rule"]);
    let c = &r["dry_run"]["plan"]["conflicts"][0];
    assert_eq!(c["group"]["path"], ext.path());
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
        assert_ne!(task.cgroup("cpuset"), ext.path(), "{run}");
    }
    let mut cpus = cpus_of_tasks(&run);
    cpus.sort();
    assert_eq!(cpus, vec!["0", "1"], "{run}");
    daemon.assert_alive();
    daemon.stop();
}
