//! Unit tests of the end-to-end harness's parsers (no cluster needed).

mod support;

use support::*;

#[test]
fn parses_a_remote_hook_line() {
    let line = "[2026-11-29T17:34:21.746] [1.0] berth: job 1.0: hook init in remote: uid=0 gid=0 job_cores=0-1 step_cores=0-1 local_tasks=2";
    let h = parse_hook_line(line).unwrap();
    assert_eq!(h.step_label(), "1.0");
    assert_eq!((h.hook.as_str(), h.context.as_str()), ("init", "remote"));
    assert_eq!(h.job_cores, "0-1");
    assert_eq!(h.local_tasks, "2");
}

#[test]
fn parses_lines_without_a_job() {
    let h = parse_hook_line(
        "srun: berth: hook init in local: uid=- gid=- job_cores=- step_cores=- local_tasks=-",
    )
    .unwrap();
    assert_eq!(h.job, None);
    assert_eq!(h.uid, "-");
}

#[test]
fn rejects_other_formats() {
    assert!(parse_hook_line("berth: job 1.0: hook init in remote: uid=0").is_err());
    assert!(parse_hook_line(
        "berth: job 1.x: hook init in remote: uid=0 gid=0 job_cores=0 step_cores=0 local_tasks=1"
    )
    .is_err());
    assert!(parse_hook_line("berth: job 1.batch: hook exit in remote: uid=0 gid=0 job_cores=0 step_cores=0 local_tasks=1").is_ok());
}

#[test]
fn parses_task_views() {
    let out = "0: Cpus_allowed_list:\t0\n0: 3:cpuset:/slurm_b0n1/uid_0/job_1/step_0\n0: 9:name=systemd:/\n1: Cpus_allowed_list:\t1\n1: 0::/\n";
    let tasks = parse_task_views(out);
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0].cpus_allowed, "0");
    assert_eq!(tasks[0].cgroup("cpuset"), "/slurm_b0n1/uid_0/job_1/step_0");
    assert_eq!(tasks[0].cgroup("systemd"), "/");
    assert_eq!(tasks[1].cgroup(""), "/");
    assert_eq!(cpu_list("0-2,5"), vec![0, 1, 2, 5]);
}
