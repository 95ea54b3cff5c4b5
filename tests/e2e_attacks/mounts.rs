//! End-to-end attacks on the container's mounts, each as the security review reproduced
//! it (items 3, 4 and 6) with the test user on a real Slurm, once with slurmd in the
//! host's (private) mount namespace and once where every mount is rshared, as on a
//! systemd host (`test-cluster/up --shared-mounts`):
//!
//! - a user bind under a site bind of a shared mount stays in the step: neither the
//!   host nor slurmd's namespace gains a mount, during the step or after it, and
//!   nothing made for the container (mounts under run_dir, loop devices) stays;
//! - tasks run with `NoNewPrivs: 1`, and a setuid-root host binary reachable under a
//!   bind runs with the user's euid;
//! - bind targets that climb out with `..` or land in /dev through an image symlink
//!   are refused with one `berth:` line, and the command does not run.
//!
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::container_images::loops_backed_by;
use crate::support::{cluster, Cluster, Run, Setup, TEST_UID, TEST_USER};
use berth::sif::build::{self, BuildOptions};

/// Where the site bind appears in the container.
const SITE_TARGET: &str = "/srv/s";

fn run_dir(cluster: &Cluster) -> String {
    format!("/run/berth-e2e-mounts-slot{}", cluster.info()["slot"])
}

fn setup(cluster: &Cluster, shared_mounts: bool) -> Setup {
    Setup::default()
        .shared_mounts(shared_mounts)
        .plugstack_args(&format!(
            "log_hooks=yes run_dir={} mount_idle_seconds=0 squashfs_mount=any user_binds=/home,{} binds={}:{SITE_TARGET}",
            run_dir(cluster),
            cluster.shared_dir().display(),
            cluster.site_dir().display(),
        ))
}

/// The test's files in the cluster's shared directory.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
    fn image(&self) -> String {
        self.path("links.sif")
    }
}

/// Builds once per test process: a busybox image with the symlink /d -> /dev, a
/// user-owned bind source, and a root-owned setuid-root static binary printing its
/// euid in a directory users may bind.
fn files(cluster: &Cluster) -> Files {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let dir = cluster.shared_dir().join("mount-attacks");
    if built.as_deref() == Some(dir.as_path()) {
        return Files { dir };
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    build::busybox::busybox_rootfs(&rootfs).unwrap();
    symlink("/dev", rootfs.join("d")).unwrap();
    build::build(&rootfs, &dir.join("links.sif"), &BuildOptions::new()).unwrap();
    fs::set_permissions(dir.join("links.sif"), fs::Permissions::from_mode(0o644)).unwrap();
    make_user_source(&dir.join("w"));
    make_setuid_euid(&dir.join("hostbin"), work.path());
    *built = Some(dir.clone());
    Files { dir }
}

/// A directory of the test user's with one file in it.
fn make_user_source(w: &Path) {
    fs::create_dir_all(w).unwrap();
    fs::write(w.join("from-user"), "user data\n").unwrap();
    let ok = Command::new("chown")
        .args(["-R", TEST_USER])
        .arg(w)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {}", w.display());
}

/// `dir/euid`: a static binary printing `euid=N`, root-owned, mode 4755.
fn make_setuid_euid(dir: &Path, work: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let src = work.join("euid.c");
    fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf(\"euid=%d\\n\", (int)geteuid()); return 0; }\n",
    )
    .unwrap();
    let bin = dir.join("euid");
    let ok = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc -static euid.c");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
}

fn ready(shared_mounts: bool) -> Option<(Cluster, Files)> {
    let cluster = cluster()?;
    let files = files(&cluster);
    cluster.ensure(&setup(&cluster, shared_mounts));
    assert_eq!(
        cluster.info()["shared_mounts"],
        if shared_mounts { "yes" } else { "no" }
    );
    if shared_mounts {
        assert_site_shared_with_host(&cluster);
    }
    Some((cluster, files))
}

/// The `shared:N` peer group of the mount at `point` in `mountinfo`, if any.
fn peer_group(mountinfo: &Path, point: &Path) -> Option<String> {
    let text = fs::read_to_string(mountinfo).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4).map(Path::new) == Some(point))?;
    line.split(' ')
        .skip(6)
        .take_while(|f| *f != "-")
        .find(|f| f.starts_with("shared:"))
        .map(String::from)
}

/// The harness itself: with --shared-mounts the site directory is one peer group on
/// the host and in slurmd's namespace, so a leak would show.
fn assert_site_shared_with_host(cluster: &Cluster) {
    let site = cluster.site_dir();
    let node = &cluster.nodes()[0];
    let slurmd = PathBuf::from(format!("/proc/{}/mountinfo", cluster.slurmd_pid(node)));
    let host = peer_group(Path::new("/proc/self/mountinfo"), &site);
    assert!(
        host.is_some(),
        "{} is not a shared mount on the host",
        site.display()
    );
    assert_eq!(
        peer_group(&slurmd, &site),
        host,
        "slurmd's site mount is not the host's peer"
    );
}

/// The mount points in `mountinfo` at or under any of `dirs`.
fn mounts_at_or_under(mountinfo: &Path, dirs: &[PathBuf]) -> BTreeSet<String> {
    let text = fs::read_to_string(mountinfo)
        .unwrap_or_else(|e| panic!("read {}: {e}", mountinfo.display()));
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| {
            dirs.iter()
                .any(|d| Path::new(m) == d.as_path() || Path::new(m).starts_with(d))
        })
        .map(String::from)
        .collect()
}

/// What a leaking bind or a left-over container mount would change: the mounts at or
/// under the site directory, run_dir and the shared directory, on the host (seen by
/// this test) and in slurmd's namespace (paths as slurmd sees them).
#[derive(Debug, PartialEq, Eq)]
struct MountViews {
    host: BTreeSet<String>,
    slurmd: BTreeSet<String>,
}

impl MountViews {
    /// Without the mounts under run_dir (on the host and as slurmd sees it).
    fn without_run_dir(&self, cluster: &Cluster) -> MountViews {
        let job = PathBuf::from(run_dir(cluster));
        let host = cluster.host_path(&job);
        let keep = |m: &&String| {
            !Path::new(m.as_str()).starts_with(&job) && !Path::new(m.as_str()).starts_with(&host)
        };
        MountViews {
            host: self.host.iter().filter(keep).cloned().collect(),
            slurmd: self.slurmd.iter().filter(keep).cloned().collect(),
        }
    }
}

fn mount_views(cluster: &Cluster) -> MountViews {
    let job_dirs = [
        cluster.site_dir(),
        PathBuf::from(run_dir(cluster)),
        cluster.shared_dir(),
    ];
    let mut host_dirs: Vec<PathBuf> = job_dirs.iter().map(|d| cluster.host_path(d)).collect();
    host_dirs.extend(job_dirs.iter().cloned());
    let node = &cluster.nodes()[0];
    let slurmd = PathBuf::from(format!("/proc/{}/mountinfo", cluster.slurmd_pid(node)));
    MountViews {
        host: mounts_at_or_under(Path::new("/proc/self/mountinfo"), &host_dirs),
        slurmd: mounts_at_or_under(&slurmd, &job_dirs),
    }
}

/// Waits (slurmstepd may still run its exit hook when srun returns) until the mount
/// views are `before` again and no loop device of the image is left; panics after 15 s.
#[track_caller]
fn wait_unchanged(cluster: &Cluster, files: &Files, before: &MountViews) {
    let start = Instant::now();
    loop {
        let now = mount_views(cluster);
        let loops = loops_backed_by(Path::new(&files.image()));
        if now == *before && loops.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("left behind after the step: mounts {now:?} (before: {before:?}), loop devices {loops:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Review item 3: `--container-mounts=W:/srv/s/x` under the site bind /srv/s of a
/// shared mount. The task sees W there; the host and slurmd never do.
fn a_user_bind_under_a_site_bind_stays_in_the_step(shared_mounts: bool) {
    let Some((cluster, files)) = ready(shared_mounts) else {
        return;
    };
    let site = cluster.site_dir();
    let _ = fs::remove_dir_all(site.join("x"));
    fs::create_dir_all(site.join("x")).unwrap();
    let site_before = entries(&site);
    let before = mount_views(&cluster);
    let marker = cluster.shared_dir().join("mount-attacks-seen");
    let _ = fs::remove_file(&marker);

    let script = format!(
        "cat {SITE_TARGET}/x/from-user && echo seen > {} && sleep 2",
        marker.display()
    );
    let mut step = cluster
        .client_command(
            Some(TEST_USER),
            &[],
            &[
                "srun",
                &format!("--container={}", files.image()),
                &format!("--container-mounts={}:{SITE_TARGET}/x", files.path("w")),
                "/bin/sh",
                "-c",
                &script,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen_during = false;
    let mut during = Vec::new();
    while step.try_wait().unwrap().is_none() {
        seen_during |= marker.exists();
        if seen_during {
            during.push(mount_views(&cluster));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = step.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "the step failed");
    assert!(stdout.contains("user data"), "the bind was not in place");
    assert!(seen_during, "never saw the step run");
    // While the step runs, run_dir holds its image's mount (root's cache, not the
    // user's bind); the site directory must look as before.
    let site_only = |v: &MountViews| v.without_run_dir(&cluster);
    for views in &during {
        assert_eq!(
            site_only(views),
            site_only(&before),
            "a user bind of the step showed outside it"
        );
    }
    wait_unchanged(&cluster, &files, &before);
    assert_eq!(entries(&site), site_before, "the site directory changed");
    assert!(entries(&site.join("x")).is_empty(), "site/x gained entries");
}

#[test]
fn a_user_bind_under_a_site_bind_stays_in_the_step_private_host() {
    a_user_bind_under_a_site_bind_stays_in_the_step(false);
}

#[test]
fn a_user_bind_under_a_site_bind_stays_in_the_step_shared_host() {
    a_user_bind_under_a_site_bind_stays_in_the_step(true);
}

/// Review item 4: tasks have no_new_privs, and a setuid-root host binary under a bind
/// runs with the user's euid (outside berth it gives euid 0: the control).
fn no_new_privs_and_setuid_gives_nothing(shared_mounts: bool) {
    let Some((cluster, files)) = ready(shared_mounts) else {
        return;
    };
    let euid = cluster.host_path(Path::new(&files.path("hostbin/euid")));
    let control = Run::of(
        Command::new("runuser")
            .args(["-u", TEST_USER, "--"])
            .arg(&euid),
    );
    assert_eq!(control.stdout.trim(), "euid=0", "the control: {control}");

    let before = mount_views(&cluster);
    let run = cluster.srun_as(
        TEST_USER,
        &[
            &format!("--container={}", files.image()),
            &format!("--container-mounts={}:/hostbin:ro", files.path("hostbin")),
            "/bin/sh",
            "-c",
            "grep ^NoNewPrivs: /proc/self/status; /hostbin/euid",
        ],
    );
    run.assert_ok();
    let lines = run.lines();
    assert!(
        lines.contains(&"NoNewPrivs:\t1"),
        "task without no_new_privs:\n{run}"
    );
    assert!(
        lines.contains(&format!("euid={TEST_UID}").as_str()),
        "the setuid binary did not run as the user:\n{run}"
    );
    wait_unchanged(&cluster, &files, &before);
}

#[test]
fn no_new_privs_and_setuid_gives_nothing_private_host() {
    no_new_privs_and_setuid_gives_nothing(false);
}

#[test]
fn no_new_privs_and_setuid_gives_nothing_shared_host() {
    no_new_privs_and_setuid_gives_nothing(true);
}

/// Review item 6: targets that escape by `..` or through the image's /d -> /dev are
/// refused with one `berth:` line naming the target, and the command does not run.
fn escaping_targets_are_refused(shared_mounts: bool) {
    let Some((cluster, files)) = ready(shared_mounts) else {
        return;
    };
    let before = mount_views(&cluster);
    let cases = [
        ("/tmp/../proc/sys/kernel", "contains `..`"),
        ("/d/shm/x", "lands on /dev"),
        ("/bin/..", "contains `..`"),
    ];
    for (target, why) in cases {
        let run = cluster.srun_as(
            TEST_USER,
            &[
                &format!("--container={}", files.image()),
                &format!("--container-mounts={}:{target}", files.path("w")),
                "/bin/echo",
                "COMMAND-RAN",
            ],
        );
        run.assert_failed();
        assert!(
            !run.stdout.contains("COMMAND-RAN"),
            "the command ran:\n{run}"
        );
        let lines = run.berth_lines();
        assert_eq!(lines.len(), 1, "expected one berth: line:\n{run}");
        assert!(
            lines[0].contains(target) && lines[0].contains(why),
            "{target}: expected a line naming it and '{why}':\n{run}"
        );
        wait_unchanged(&cluster, &files, &before);
    }
}

#[test]
fn escaping_targets_are_refused_private_host() {
    escaping_targets_are_refused(false);
}

#[test]
fn escaping_targets_are_refused_shared_host() {
    escaping_targets_are_refused(true);
}
