//! End-to-end: berth loaded as `required` in a real Slurm (test-cluster/), on 22.05 and
//! 24.11. Jobs run as root and as the test user, batch jobs and two-node steps work,
//! berth's hooks run in the contexts Slurm documents with the items it documents, and a
//! bad plugstack.conf argument is reported without taking the node's jobs down.
//!
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{cluster, cpu_list, hook_lines, Cluster, HookLine, Setup, TEST_UID, TEST_USER};

/// The hooks slurmstepd runs for a job step, with how many times each runs per node
/// for `tasks` local tasks, in the order they start.
fn expected_remote_hooks(tasks: usize) -> Vec<(&'static str, usize)> {
    vec![
        ("init", 1),
        ("init_post_opt", 1),
        ("user_init", 1),
        ("task_init_privileged", tasks),
        ("task_post_fork", tasks),
        ("task_init", tasks),
        ("task_exit", tasks),
        ("exit", 1),
    ]
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string()
}

fn counts<'a>(lines: impl IntoIterator<Item = &'a HookLine>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.hook.clone()).or_default() += 1;
    }
    counts
}

/// The remote hook lines of `label` ("J.S"), in log order.
fn remote_lines(log: &str, label: &str) -> Vec<HookLine> {
    hook_lines(log)
        .into_iter()
        .filter(|h| h.context == "remote" && h.step_label() == label)
        .collect()
}

/// The job id of the one job that ran since `log` began (tests hold the cluster alone).
fn only_job(log: &str) -> u32 {
    let jobs: std::collections::BTreeSet<u32> = hook_lines(log)
        .iter()
        .filter_map(|h| h.job.as_deref()?.parse().ok())
        .collect();
    assert_eq!(jobs.len(), 1, "expected hook lines of one job:\n{log}");
    *jobs.iter().next().unwrap()
}

/// Asserts the remote hooks of a step on one node: each hook the expected number of
/// times, in order, all with the same items.
#[track_caller]
fn assert_step_hooks(lines: &[HookLine], tasks: usize, uid: u32) {
    let expected: BTreeMap<String, usize> = expected_remote_hooks(tasks)
        .into_iter()
        .map(|(h, n)| (h.to_string(), n))
        .collect();
    assert_eq!(counts(lines), expected, "remote hooks:\n{lines:#?}");

    // Order: init, init_post_opt and user_init first, exit last, task hooks between.
    let order: Vec<&str> = lines.iter().map(|h| h.hook.as_str()).collect();
    assert_eq!(
        &order[..3],
        ["init", "init_post_opt", "user_init"],
        "{order:?}"
    );
    assert_eq!(order.last(), Some(&"exit"), "{order:?}");
    // A task's privileged hook comes before the first user-side task hook.
    let first = |hook: &str| order.iter().position(|h| *h == hook).unwrap();
    assert!(
        first("task_init_privileged") < first("task_init"),
        "{order:?}"
    );
    assert!(first("task_post_fork") < first("task_exit"), "{order:?}");

    for h in lines {
        assert_eq!(h.uid, uid.to_string(), "{h:?}");
        assert_eq!(h.gid, uid.to_string(), "{h:?}");
        assert_eq!(h.local_tasks, tasks.to_string(), "{h:?}");
        assert_eq!(
            cpu_list(&h.step_cores).len(),
            tasks,
            "one core per task: {h:?}"
        );
        assert_eq!(h.job_cores, h.step_cores, "{h:?}");
    }
}

/// srun's own (local context) hook lines: the items only slurmstepd knows print `-`.
#[track_caller]
fn assert_local_hooks(stderr: &str, job: u32) {
    let lines = hook_lines(stderr);
    let hooks: Vec<&str> = lines.iter().map(|h| h.hook.as_str()).collect();
    // local_user_init is SPANK's srun-side hook; berth logs it too.
    assert_eq!(
        hooks,
        ["init", "init_post_opt", "local_user_init", "exit"],
        "srun's stderr:\n{stderr}"
    );
    for h in &lines {
        assert_eq!(h.context, "local", "{h:?}");
        assert_eq!(
            (
                h.job_cores.as_str(),
                h.step_cores.as_str(),
                h.local_tasks.as_str()
            ),
            ("-", "-", "-"),
            "{h:?}"
        );
        if let Some(j) = &h.job {
            assert_eq!(j, &job.to_string(), "{h:?}");
        }
    }
    assert_eq!(
        lines[2].step_label(),
        format!("{job}.0"),
        "local_user_init knows the step"
    );
}

#[test]
fn berth_is_loaded_as_required() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    let conf = std::fs::read_to_string(c.info()["plugstack_conf"].clone()).unwrap();
    let line = conf
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no plugin in plugstack.conf:\n{conf}"));
    assert_eq!(line, format!("required {} log_hooks=yes", c.plugin_path()));
    assert!(c.host_path(c.plugin_path().as_ref()).is_file());
}

#[test]
fn srun_runs_two_tasks_as_root() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    let run = c.srun(&["-n2", "hostname"]);
    run.assert_ok();
    assert_eq!(run.lines(), [host_name(), host_name()]);
}

#[test]
fn srun_runs_two_tasks_as_the_test_user() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    let run = c.srun_as(TEST_USER, &["-n2", "id", "-u"]);
    run.assert_ok();
    assert_eq!(run.lines(), [TEST_UID.to_string(), TEST_UID.to_string()]);
    let run = c.srun_as(TEST_USER, &["-n2", "hostname"]);
    run.assert_ok();
    assert_eq!(run.lines(), [host_name(), host_name()]);
}

#[test]
fn tasks_are_bound_and_placed_in_the_step_cgroup() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    let (run, tasks) = c.tasks(Some(TEST_USER), &["-n2"]);
    run.assert_ok();
    assert_eq!(tasks.len(), 2, "{run}");
    let node = &c.nodes()[0];
    let mut cpus = Vec::new();
    for t in &tasks {
        let cpuset = t.cgroup("cpuset");
        assert!(
            cpuset.starts_with(&format!("/slurm_{node}/uid_{TEST_UID}/job_")),
            "task {} is in cpuset {cpuset}",
            t.rank
        );
        assert!(cpuset.contains("/step_0"), "{cpuset}");
        assert!(t.cgroup("freezer").contains("/step_0"), "{t:?}");
        let own = cpu_list(&t.cpus_allowed);
        assert_eq!(own.len(), 1, "one CPU per task with -n2: {t:?}");
        cpus.extend(own);
    }
    cpus.sort();
    cpus.dedup();
    assert_eq!(cpus.len(), 2, "the two tasks share a CPU: {tasks:?}");
}

#[test]
fn sbatch_runs_a_batch_job_and_its_step() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    let mark = c.mark();
    let job = c.sbatch_wait(
        Some(TEST_USER),
        "#!/bin/sh\nid -u\nsrun -n1 echo step-ran\n",
        &["-n1"],
    );
    job.run.assert_ok();
    // The output also holds the batch step's srun's own (local) hook lines.
    let output: Vec<&str> = job
        .output
        .lines()
        .filter(|l| !l.contains("berth: "))
        .collect();
    assert_eq!(
        output,
        [TEST_UID.to_string().as_str(), "step-ran"],
        "job output"
    );
    assert_eq!(
        counts(&hook_lines(&job.output))["local_user_init"],
        1,
        "{}",
        job.output
    );

    // sbatch runs berth in the allocator context, where no job items exist yet.
    let alloc = hook_lines(&job.run.stderr);
    let hooks: Vec<&str> = alloc.iter().map(|h| h.hook.as_str()).collect();
    assert_eq!(hooks, ["init", "init_post_opt", "exit"], "{}", job.run);
    for h in &alloc {
        assert_eq!(h.context, "allocator", "{h:?}");
        assert_eq!(h.job, None, "{h:?}");
        for item in [&h.uid, &h.gid, &h.job_cores, &h.step_cores, &h.local_tasks] {
            assert_eq!(item, "-", "{h:?}");
        }
    }
    let log = c.wait_for_step_end(&mark, job.job_id, "batch");
    let batch = remote_lines(&log, &format!("{}.batch", job.job_id));
    assert_step_hooks(&batch, 1, TEST_UID);
    let log = c.wait_for_step_end(&mark, job.job_id, "0");
    assert_step_hooks(
        &remote_lines(&log, &format!("{}.0", job.job_id)),
        1,
        TEST_UID,
    );
}

#[test]
fn a_step_spans_two_nodes() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default().nodes(2));
    let nodes = c.nodes();
    assert_eq!(nodes.len(), 2);
    let mark = c.mark();
    let run = c.srun_as(TEST_USER, &["-N2", "-n2", "hostname"]);
    run.assert_ok();
    assert_eq!(run.lines(), [host_name(), host_name()]);

    // Both slurmd logs show the step's hooks, one local task each.
    let log = c.wait_for_log(
        &mark,
        Duration::from_secs(15),
        "the step's exit hook on both nodes",
        |t| {
            hook_lines(t)
                .iter()
                .filter(|h| h.context == "remote" && h.hook == "exit")
                .count()
                >= 2
        },
    );
    let job = only_job(&log);
    for node in &nodes {
        let lines = remote_lines(&c.slurmd_log(node), &format!("{job}.0"));
        assert_step_hooks(&lines, 1, TEST_UID);
    }

    let (run, tasks) = c.tasks(Some(TEST_USER), &["-N2", "-n2"]);
    run.assert_ok();
    let mut seen: Vec<String> = tasks
        .iter()
        .map(|t| {
            let node = t.cgroup("cpuset").trim_start_matches("/slurm_");
            node[..node.find('/').unwrap_or(node.len())].to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, nodes, "one task per node: {tasks:?}");
}

#[test]
fn hooks_run_in_the_expected_contexts_with_the_expected_items() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    for (user, uid) in [(None, 0), (Some(TEST_USER), TEST_UID)] {
        let mark = c.mark();
        let run = c.srun_as_with_env(user, &[], &["-n2", "true"]);
        run.assert_ok();
        let log = c.wait_for_log(&mark, Duration::from_secs(15), "a step's exit hook", |t| {
            hook_lines(t)
                .iter()
                .any(|h| h.context == "remote" && h.hook == "exit")
        });
        let job = only_job(&log);
        let lines = remote_lines(&log, &format!("{job}.0"));
        assert_step_hooks(&lines, 2, uid);
        assert_eq!(
            hook_lines(&log).len(),
            lines.len(),
            "no other hook lines:\n{log}"
        );
        assert_local_hooks(&run.stderr, job);
    }
}

#[test]
fn slurmd_runs_init_in_its_own_context_when_it_starts() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default());
    c.restart();
    let node = &c.nodes()[0];
    let log = c.slurmd_log(node);
    let slurmd: Vec<HookLine> = hook_lines(&log)
        .into_iter()
        .filter(|h| h.context == "slurmd")
        .collect();
    assert_eq!(slurmd.len(), 1, "slurmd's log:\n{log}");
    let h = &slurmd[0];
    assert_eq!(h.hook, "init");
    assert_eq!(h.job, None, "no job in slurmd's own context");
    for item in [&h.job_cores, &h.step_cores, &h.local_tasks] {
        assert_eq!(item, "-", "{h:?}");
    }
}

#[test]
fn extern_steps_run_berth_with_prolog_flags_contain() {
    let Some(c) = cluster() else { return };
    c.ensure(&Setup::default().prolog_flags("Contain"));
    let mark = c.mark();
    c.srun_as(TEST_USER, &["-n1", "true"]).assert_ok();
    let log = c.wait_for_log(
        &mark,
        Duration::from_secs(15),
        "the extern step's exit",
        |t| {
            hook_lines(t)
                .iter()
                .any(|h| h.step.as_deref() == Some("extern") && h.hook == "exit")
        },
    );
    let job = only_job(&log);
    let ext = remote_lines(&log, &format!("{job}.extern"));
    let hooks: Vec<&str> = ext.iter().map(|h| h.hook.as_str()).collect();
    // The extern step has no user task: no user_init and no task hooks but post_fork.
    assert_eq!(
        hooks,
        ["init", "init_post_opt", "task_post_fork", "exit"],
        "{log}"
    );
    for h in &ext {
        assert_eq!(h.local_tasks, "1", "{h:?}");
        assert_eq!(cpu_list(&h.job_cores).len(), 1, "{h:?}");
    }
}

const BAD_ARG: &str = "cpuset_policy=bogus";

/// `berth: invalid plugstack.conf argument '<arg>': <reason>; berth is inactive on
/// this node until it is fixed`, at error level; returns the reason.
#[track_caller]
fn find_config_error(line: &str, with_job_label: bool) -> Option<String> {
    let prefix = format!("invalid plugstack.conf argument '{BAD_ARG}': ");
    let suffix = "; berth is inactive on this node until it is fixed";
    let i = line.find("error: berth: ")?;
    let mut rest = &line[i + "error: berth: ".len()..];
    if with_job_label {
        rest = rest.strip_prefix("job ")?;
        rest = &rest[rest.find(": ")? + 2..];
    }
    let reason = rest.strip_prefix(&prefix)?.strip_suffix(suffix)?;
    Some(reason.to_string())
}

#[test]
fn a_bad_plugstack_argument_is_reported_and_jobs_still_run() {
    let Some(c) = cluster() else { return };
    // A restart, so that slurmd itself reads the bad line too.
    c.up(&Setup::default().plugstack_args(BAD_ARG));
    check_bad_argument(&c);
    c.ensure(&Setup::default());
}

fn check_bad_argument(c: &Cluster) {
    let node = &c.nodes()[0];
    let log = c.slurmd_log(node);
    let reason = log
        .lines()
        .find_map(|l| find_config_error(l, false))
        .unwrap_or_else(|| panic!("no config error from slurmd in its log:\n{log}"));
    for policy in ["shares", "widen", "strict", "off"] {
        assert!(
            reason.contains(policy),
            "the reason names the accepted values: {reason}"
        );
    }

    let mark = c.mark();
    let run = c.srun(&["-n2", "hostname"]);
    run.assert_ok();
    assert_eq!(run.lines(), [host_name(), host_name()]);
    let run = c.srun_as(TEST_USER, &["-n2", "id", "-u"]);
    run.assert_ok();
    assert_eq!(run.lines(), [TEST_UID.to_string(), TEST_UID.to_string()]);
    // slurmstepd reports it for every step (with the step's label), and berth stays
    // inactive: log_hooks is not even read.
    let log = c.wait_for_log(
        &mark,
        Duration::from_secs(15),
        "the steps' config errors",
        |t| {
            t.lines()
                .filter(|l| find_config_error(l, true).is_some())
                .count()
                >= 2
        },
    );
    assert!(hook_lines(&log).is_empty(), "{log}");

    // A step that asks for a container must not run on the host instead.
    let image = c.shared_dir().join("absent.sif");
    let run = c.srun_as(
        TEST_USER,
        &[
            &format!("--container={}", image.display()),
            "-n1",
            "echo",
            "ran-on-the-host",
        ],
    );
    run.assert_failed();
    assert!(!run.stdout.contains("ran-on-the-host"), "{run}");
    assert!(
        run.stderr.contains("berth is misconfigured on this node"),
        "{run}"
    );
}
