//! End-to-end attacks on what berth evaluates and logs as root for a user's container
//! step (security review: env script blow-up, HOME override, forged log lines). Each
//! test is the review's reproduction, run as the unprivileged test user on a real Slurm.
//!
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::support::{cluster, Cluster, Setup, TEST_USER};
use berth::sif::build::{self, BuildOptions};

/// Images whose env scripts attack the evaluator, built once per test process.
fn images(cluster: &Cluster) -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let dir = cluster.shared_dir().join("attack-env-images");
    if built.as_deref() == Some(dir.as_path()) {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    build::busybox::busybox_rootfs(&rootfs).unwrap();
    // The review's reproduction: 26 doubling lines took slurmstepd to 156 MB; 40
    // would need 8 TB.
    let grow = format!("export A=aaaaaaaa\n{}", "A=\"$A$A\"\n".repeat(40));
    for (name, environment) in [
        ("grow.sif", grow),
        ("home.sif", "export HOME=/image-home\n".to_string()),
    ] {
        let mut opts = BuildOptions::new();
        opts.metadata.environment = Some(environment);
        build::build(&rootfs, &dir.join(name), &opts).unwrap();
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o644)).unwrap();
    }
    // The review's other reproduction: many env scripts of 1 MiB each.
    let env_dir = rootfs.join(".singularity.d/env");
    fs::create_dir_all(&env_dir).unwrap();
    for i in 0..20 {
        fs::write(
            env_dir.join(format!("5{i:02}-big.sh")),
            format!("# {}\n", "x".repeat(1 << 20)),
        )
        .unwrap();
    }
    build::build(&rootfs, &dir.join("big.sif"), &BuildOptions::new()).unwrap();
    fs::set_permissions(dir.join("big.sif"), fs::Permissions::from_mode(0o644)).unwrap();
    *built = Some(dir.clone());
    dir
}

fn ready() -> Option<(Cluster, PathBuf)> {
    let cluster = cluster()?;
    let dir = images(&cluster);
    cluster.ensure(&Setup::default().plugstack_args(&format!(
        "log_hooks=yes run_dir=/run/berth-e2e-slot{} mount_idle_seconds=0",
        cluster.info()["slot"]
    )));
    Some((cluster, dir))
}

#[test]
fn an_env_script_that_doubles_a_value_ends_the_step_with_the_limit_named() {
    let Some((cluster, dir)) = ready() else {
        return;
    };
    let image = dir.join("grow.sif").display().to_string();
    let run = cluster.srun_as(
        TEST_USER,
        &[&format!("--container={image}"), "/bin/echo", "RAN"],
    );
    run.assert_failed();
    assert!(!run.stdout.contains("RAN"), "the command ran:\n{run}");
    let lines = run.berth_lines();
    assert_eq!(lines.len(), 1, "one berth: line:\n{run}");
    assert!(
        // The script starts on line 3 (after `#!/bin/sh` and a blank line): 8 bytes
        // doubled 15 times pass 128 KiB on line 18.
        lines[0].contains("the image's env script 90-environment.sh, line 18, makes a value longer than 131072 bytes")
            && lines[0].contains("env_value_max_bytes=131072 (plugstack.conf)"),
        "{run}"
    );
}

#[test]
fn env_scripts_past_the_size_limit_end_the_step() {
    let Some((cluster, dir)) = ready() else {
        return;
    };
    let image = dir.join("big.sif").display().to_string();
    let run = cluster.srun_as(
        TEST_USER,
        &[&format!("--container={image}"), "/bin/echo", "RAN"],
    );
    run.assert_failed();
    assert!(!run.stdout.contains("RAN"), "the command ran:\n{run}");
    assert_eq!(
        run.berth_lines(),
        vec!["berth: the image's env scripts (/.singularity.d/env/*.sh) hold more than 1048576 bytes; the site allows at most env_script_max_bytes=1048576 (plugstack.conf); make them smaller or ask the admins to raise the limit"],
        "{run}"
    );
}

#[test]
fn an_image_cannot_change_the_users_home() {
    let Some((cluster, dir)) = ready() else {
        return;
    };
    let image = dir.join("home.sif").display().to_string();
    let run = cluster.srun_as_with_env(
        Some(TEST_USER),
        &[("APPTAINERENV_HOME", "/forced-home")],
        &[
            &format!("--container={image}"),
            "--no-container-mount-home",
            "/bin/sh",
            "-c",
            "echo HOME=$HOME",
        ],
    );
    run.assert_ok();
    assert!(
        run.stdout.contains("HOME=/home/berthtest"),
        "HOME is the user's:\n{run}"
    );
}

#[test]
fn a_newline_in_the_image_path_forges_no_log_line() {
    let Some((cluster, dir)) = ready() else {
        return;
    };
    let forged = "berth: job 1.0: cpuset conflict: forged";
    let image = format!("{}/missing.sif\n{forged}", dir.display());
    let mark = cluster.mark();
    let run = cluster.srun_as(
        TEST_USER,
        &[&format!("--container={image}"), "/bin/echo", "RAN"],
    );
    run.assert_failed();
    assert!(!run.stdout.contains("RAN"), "{run}");
    let log = cluster.wait_for_log(
        &mark,
        std::time::Duration::from_secs(15),
        "berth's refusal",
        |log| log.contains("missing.sif\\n"),
    );
    for line in log.lines().chain(run.stderr.lines()) {
        assert!(
            !line.starts_with(forged) && !line.contains(&format!("] {forged}")),
            "a forged line:\n{line}\n--- slurmd:\n{log}\n--- srun:\n{run}"
        );
    }
    assert!(
        run.stderr.contains(&format!("missing.sif\\n{forged}")),
        "the path reaches the user escaped:\n{run}"
    );
}
