//! End-to-end attacks on berth's run_dir, each as the security review reproduced it
//! with the test user on a real Slurm: the job's umask reaching root's files, other
//! users' images browsable through run_dir, an image rewritten in place with its old
//! mtime restored, and the cap on mounted images.
//!
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{cluster, Cluster, Setup, TEST_USER};
use berth::sif::build;

fn run_dir(cluster: &Cluster) -> String {
    format!("/run/berth-e2e-attacks-slot{}", cluster.info()["slot"])
}

fn setup(cluster: &Cluster) -> Setup {
    Setup::default().plugstack_args(&format!(
        "log_hooks=yes run_dir={} mount_idle_seconds=300 max_images_per_user=1 squashfs_mount=any user_binds=/home,{}",
        run_dir(cluster),
        cluster.shared_dir().display()
    ))
}

/// A bare, uncompressed squashfs (busybox + /msg.txt), owned by the test user, so
/// its bytes can be patched in place like the review did.
fn user_image(cluster: &Cluster, name: &str, msg: &str) -> PathBuf {
    let dir = cluster.shared_dir().join("attack-images");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    build::busybox::busybox_rootfs(&rootfs).unwrap();
    fs::write(rootfs.join("msg.txt"), msg).unwrap();
    let image = dir.join(name);
    let _ = fs::remove_file(&image);
    let ok = Command::new("mksquashfs")
        .arg(&rootfs)
        .arg(&image)
        .args([
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-xattrs",
            "-all-root",
            "-quiet",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mksquashfs");
    let chown = Command::new("chown")
        .arg(TEST_USER)
        .arg(&image)
        .status()
        .unwrap();
    assert!(chown.success());
    fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
    image
}

fn ready() -> Option<Cluster> {
    let cluster = cluster()?;
    cluster.ensure(&setup(&cluster));
    Some(cluster)
}

fn host_run_dir(cluster: &Cluster) -> PathBuf {
    cluster.host_path(Path::new(&run_dir(cluster)))
}

/// Every entry under run_dir with its mode, not descending into mounts.
/// (mounted image roots and kept namespace files carry their filesystem's mode).
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let dev = fs::symlink_metadata(dir).unwrap().dev();
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.dev() != dev {
                continue;
            }
            out.push((e.path(), m.mode() & 0o7777, m.is_dir()));
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out
}

#[test]
fn umask_000_leaves_every_run_dir_entry_root_only() {
    let Some(cluster) = ready() else {
        return;
    };
    let _ = fs::remove_dir_all(host_run_dir(&cluster));
    let image = user_image(&cluster, "umask.sqfs", "umask\n");
    let cmd = format!(
        "umask 000; srun --container={} /bin/cat /msg.txt",
        image.display()
    );
    let run = cluster.client(Some(TEST_USER), &[], &["/bin/sh", "-c", &cmd]);
    run.assert_ok();
    assert!(run.stdout.contains("umask"), "{run}");
    let top = host_run_dir(&cluster);
    assert_eq!(fs::metadata(&top).unwrap().mode() & 0o7777, 0o755);
    let entries = modes_under(&top);
    assert!(!entries.is_empty());
    for (path, mode, is_dir) in entries {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:04o}", path.display());
    }
}

#[test]
fn another_user_cannot_browse_a_mounted_image_through_run_dir() {
    let Some(cluster) = ready() else {
        return;
    };
    let image = user_image(&cluster, "private.sqfs", "root only secret\n");
    fs::set_permissions(&image, fs::Permissions::from_mode(0o600)).unwrap();
    Command::new("chown")
        .arg("root")
        .arg(&image)
        .status()
        .unwrap();
    let mut step = cluster.client_command(
        None,
        &[],
        &[
            "srun",
            &format!("--container={}", image.display()),
            "/bin/sleep",
            "4",
        ],
    );
    let mut child = step.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let look = format!(
        "cat {}/images/*/root/msg.txt",
        host_run_dir(&cluster).display()
    );
    let peek = cluster.client(Some(TEST_USER), &[], &["/bin/sh", "-c", &look]);
    child.wait().unwrap();
    assert!(!peek.stdout.contains("secret"), "{peek}");
    assert!(!peek.ok(), "{peek}");
}

#[test]
fn an_image_rewritten_in_place_with_its_old_mtime_is_not_served_stale() {
    let Some(cluster) = ready() else {
        return;
    };
    let image = user_image(&cluster, "rewrite.sqfs", "version-AAAA\n");
    let arg = format!("--container={}", image.display());
    let first = cluster.srun_as(TEST_USER, &[&arg, "/bin/cat", "/msg.txt"]);
    first.assert_ok();
    assert!(first.stdout.contains("version-AAAA"), "{first}");
    // As the owner would: patch the bytes in place (same inode, same size), then
    // restore the old mtime (`touch -d`).
    let before = fs::metadata(&image).unwrap();
    let bytes = fs::read(&image).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"version-AAAA")
        .expect("uncompressed image holds the text");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new().write(true).open(&image).unwrap();
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(b"version-BBBB").unwrap();
    }
    let old = fs::FileTimes::new().set_modified(before.modified().unwrap());
    fs::File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .set_times(old)
        .unwrap();
    let after = fs::metadata(&image).unwrap();
    assert_eq!(
        (
            before.ino(),
            before.mtime(),
            before.mtime_nsec(),
            before.size()
        ),
        (after.ino(), after.mtime(), after.mtime_nsec(), after.size())
    );
    let second = cluster.srun_as(TEST_USER, &[&arg, "/bin/cat", "/msg.txt"]);
    second.assert_ok();
    assert!(
        second.stdout.contains("version-BBBB"),
        "stale mount served:\n{second}"
    );
}

#[test]
fn a_user_at_the_image_cap_gets_one_berth_line_naming_the_key() {
    let Some(cluster) = ready() else {
        return;
    };
    let a = user_image(&cluster, "cap-a.sqfs", "a\n");
    let b = user_image(&cluster, "cap-b.sqfs", "b\n");
    let mut hold = cluster.client_command(
        Some(TEST_USER),
        &[],
        &[
            "srun",
            &format!("--container={}", a.display()),
            "/bin/sleep",
            "5",
        ],
    );
    let mut child = hold.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let run = cluster.srun_as(
        TEST_USER,
        &[
            "--overlap",
            &format!("--container={}", b.display()),
            "/bin/cat",
            "/msg.txt",
        ],
    );
    child.wait().unwrap();
    run.assert_failed();
    let lines = run.berth_lines();
    assert_eq!(lines.len(), 1, "{run}");
    assert_eq!(
        lines[0],
        "berth: this node already has 1 mounted images, the limit set by \
         `max_images_per_user=1` in plugstack.conf; run fewer distinct images at once (or \
         rebuild less often), or ask your administrator to raise max_images_per_user",
        "{run}"
    );
}

#[test]
fn a_user_cannot_plant_symlinks_under_run_dir() {
    let Some(cluster) = ready() else {
        return;
    };
    let image = user_image(&cluster, "plant.sqfs", "plant\n");
    let arg = format!("--container={}", image.display());
    cluster
        .srun_as(TEST_USER, &[&arg, "/bin/cat", "/msg.txt"])
        .assert_ok();
    let top = host_run_dir(&cluster);
    let plant = format!(
        "for d in {t}/views/* {t}/images/*; do rm -f $d/key $d/root 2>/dev/null; \
         ln -s /etc/shadow $d/key && echo PLANTED; done; ln -s / {t}/images/x && echo PLANTED",
        t = top.display()
    );
    let run = cluster.client(Some(TEST_USER), &[], &["/bin/sh", "-c", &plant]);
    assert!(!run.stdout.contains("PLANTED"), "{run}");
    let links: Vec<_> = modes_under(&top)
        .into_iter()
        .filter(|(p, _, _)| fs::symlink_metadata(p).unwrap().file_type().is_symlink())
        .collect();
    assert!(links.is_empty(), "{links:?}");
}

/// The same for a reconciled step: under `umask 000`, what berth writes as root for
/// the step (its registry under run_dir, the cpu group that keeps the external
/// cpuset's weight) is not writable by the user: the task itself checks while the
/// change is in place.
#[test]
fn umask_000_in_a_reconciled_step_leaves_root_only_state_and_groups() {
    use crate::support::scenarios::{external_name, ExternalCpuset};
    let Some(cluster) = cluster() else {
        return;
    };
    let _ = fs::remove_dir_all(host_run_dir(&cluster));
    let ext = ExternalCpuset::create(&external_name(&cluster, "umask"), "1", "0");
    cluster.ensure(
        &Setup::default()
            .plugstack_args(&format!(
                "log_hooks=yes run_dir={} cpuset_policy=shares",
                run_dir(&cluster)
            ))
            .slurmd_cpuset(ext.name()),
    );
    let task = format!(
        "stat -c '%a %n' {dir} {dir}/reconcile /sys/fs/cgroup/cpu/{ext}; grep ^Cpus_allowed_list: /proc/self/status",
        dir = run_dir(&cluster),
        ext = ext.name()
    );
    let cmd = format!("umask 000; srun -n1 /bin/sh -c \"{task}\"");
    let run = cluster.client(Some(TEST_USER), &[], &["/bin/sh", "-c", &cmd]);
    // Read run_dir before the default setup comes back: a chroot's /run is remade then.
    let entries = modes_under(&host_run_dir(&cluster));
    cluster.ensure(&Setup::default());
    run.assert_ok();
    let modes: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        modes[..3],
        [
            format!("755 {}", run_dir(&cluster)),
            format!("700 {}/reconcile", run_dir(&cluster)),
            format!("755 /sys/fs/cgroup/cpu/{}", ext.name()),
        ],
        "{run}"
    );
    assert!(
        modes[3].ends_with("\t0") || modes[3].ends_with(" 0"),
        "the step ran on its CPU 0:\n{run}"
    );
    for (path, mode, is_dir) in entries {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:04o}", path.display());
    }
}
