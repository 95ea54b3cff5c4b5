//! Root-only integration tests of the mount machinery: loop device +
//! squashfs, the shared cache, the step's view (overlay, binds, pivot_root)
//! and what a task sees in it. Every test cleans up its mounts and loop
//! devices and checks that it did.
//!
//! Run as root: `cargo test --test container_mount`.

mod container_images;

use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth::container::binds::{self, Bind, Origin};
use berth::container::cache::{self, Cache, Extent, Holder, Key, MountError};
use berth::container::identity;
use berth::container::view::{self, Spec};
use container_images::*;

fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests mount filesystems: run them as root"
    );
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    image: PathBuf,
    run_dir: PathBuf,
}

/// A busybox image and a run_dir, outside /tmp (which the view binds).
fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// As [`fixture`], with `change` applied to the image's root before packing.
fn fixture_with(change: impl FnOnce(&Path)) -> Fixture {
    require_root();
    fs::create_dir_all("/var/tmp/berth-tests").unwrap();
    let tmp = tempfile::tempdir_in("/var/tmp/berth-tests").unwrap();
    let dir = tmp.path().to_path_buf();
    let root = busybox_root(&dir);
    change(&root);
    let image = dir.join("img.sqfs");
    squashfs(&root, &image, &[]);
    let run_dir = dir.join("run");
    Fixture {
        _tmp: tmp,
        dir,
        image,
        run_dir,
    }
}

impl Drop for Fixture {
    /// Even when a test fails: nothing of it stays mounted.
    fn drop(&mut self) {
        let mut left = mounts_under(&self.dir);
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: umount2 with a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn key_of(image: &Path) -> (File, Key) {
    let file = File::open(image).unwrap();
    let meta = file.metadata().unwrap();
    let key = Key::of(
        &meta,
        Extent {
            offset: 0,
            size: meta.len(),
        },
    );
    (file, key)
}

#[test]
fn an_image_is_mounted_once_shared_and_unmounted_when_idle() {
    let f = fixture();
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&f.image);
    let me = Holder::current().unwrap();
    let a = cache
        .acquire(&file, &key, me, Duration::from_secs(300))
        .unwrap();
    assert!(a.mounted_now);
    assert_eq!(
        fs::read_to_string(a.root.join("hello.txt")).unwrap(),
        "hello from the image\n"
    );
    assert_eq!(loops_backed_by(&f.image).len(), 1);
    // A second step reuses the mount.
    let b = cache
        .acquire(&file, &key, me, Duration::from_secs(300))
        .unwrap();
    assert!(!b.mounted_now);
    assert_eq!(b.root, a.root);
    assert_eq!(loops_backed_by(&f.image).len(), 1, "no second loop device");
    drop(file);
    // Given back but still within mount_idle_seconds: stays.
    let root = a.root.clone();
    cache.release(a, Duration::from_secs(300)).unwrap();
    cache.release(b, Duration::from_secs(300)).unwrap();
    assert!(cache::is_mounted(&root));
    // Idle long enough (0 s): gone, with its loop device and directories.
    let reaped = cache.reap(Duration::ZERO).unwrap();
    assert_eq!(reaped.unmounted, vec![root.clone()]);
    assert!(!root.exists());
    assert_eq!(loops_left_backed_by(&f.image), Vec::<String>::new());
    assert!(mounts_under(&f.dir).is_empty());
}

#[test]
fn a_mount_left_by_a_dead_slurmstepd_is_reaped() {
    let f = fixture();
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&f.image);
    let me = Holder::current().unwrap();
    let dead = Holder {
        pid: me.pid,
        start: me.start + 1,
    };
    let lease = cache
        .acquire(&file, &key, dead, Duration::from_secs(300))
        .unwrap();
    drop(lease); // never released: its slurmstepd "crashed"
    let reaped = cache.reap(Duration::ZERO).unwrap();
    assert_eq!(reaped.dead_holders, 1);
    assert_eq!(reaped.unmounted.len(), 1);
    assert_eq!(loops_left_backed_by(&f.image), Vec::<String>::new());
}

#[test]
fn a_squashfs_the_kernel_refuses_leaves_no_loop_device() {
    let f = fixture();
    let bad = f.dir.join("bad.sqfs");
    let mut bytes = fs::read(&f.image).unwrap();
    // Keep the magic, wreck the rest of the superblock and the tables.
    for b in bytes.iter_mut().skip(4).take(4096) {
        *b = 0xA5;
    }
    fs::write(&bad, &bytes).unwrap();
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&bad);
    let err = cache
        .acquire(
            &file,
            &key,
            Holder::current().unwrap(),
            Duration::from_secs(300),
        )
        .unwrap_err();
    assert!(matches!(err, MountError::Refused(_)), "{err}");
    assert!(err
        .to_string()
        .starts_with("the kernel refused to mount the image's squashfs"));
    assert_eq!(loops_left_backed_by(&bad), Vec::<String>::new());
    cache.reap(Duration::ZERO).unwrap();
}

/// Builds the view of `image` for uid 5001 with the default binds plus
/// `extra` and returns (namespace, lease, cache).
fn build_view(
    f: &Fixture,
    writable: bool,
    extra: Vec<Bind>,
) -> (std::os::fd::OwnedFd, cache::Lease, Cache) {
    try_build_view(f, writable, extra).unwrap()
}

/// As [`build_view`]; a refused view gives its error (lease given back).
fn try_build_view(
    f: &Fixture,
    writable: bool,
    extra: Vec<Bind>,
) -> Result<(std::os::fd::OwnedFd, cache::Lease, Cache), view::ViewError> {
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&f.image);
    let lease = cache
        .acquire(
            &file,
            &key,
            Holder::current().unwrap(),
            Duration::from_secs(300),
        )
        .unwrap();
    let cwd = f.dir.join("work");
    fs::create_dir_all(&cwd).unwrap();
    fs::write(cwd.join("input.txt"), "from the host\n").unwrap();
    let req = binds::Request {
        site: &[],
        home: None,
        cwd: &cwd,
        batch_script: None,
        user: &[],
    };
    let mut plan = binds::plan(&req).unwrap();
    plan.extend(extra);
    plan.sort_by_key(|b| b.target.components().count());
    let opened = binds::open_as_user(&plan, &[PathBuf::from("/")])
        .unwrap()
        .binds;
    let identity = identity::Identity {
        user: identity::User {
            name: "berthtest".into(),
            uid: 5001,
            gid: 5001,
            gecos: String::new(),
            home: "/home/berthtest".into(),
            shell: "/bin/sh".into(),
        },
        groups: vec![identity::Group {
            name: "berthtest".into(),
            gid: 5001,
        }],
    };
    let stage = f.run_dir.join("stage");
    fs::create_dir_all(&stage).unwrap();
    let built = view::build(&Spec {
        image_root: &lease.root,
        stage: &stage,
        writable,
        tmpfs_mib: 64,
        binds: &plan,
        opened: &opened,
        identity: Some(&identity),
        env_script_max_bytes: 1 << 20,
    });
    let v = match built {
        Ok(v) => v,
        Err(e) => {
            cache.release(lease, Duration::ZERO).unwrap();
            return Err(e);
        }
    };
    assert_eq!(v.scripts.len(), 1, "the image's env script was read");
    eprintln!("view built: {:?}", v.timings);
    Ok((v.ns, lease, cache))
}

/// Runs `args` in the view as uid/gid 5001 (or root), with `cwd`.
fn run_in(ns: &std::os::fd::OwnedFd, uid: u32, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let fd = ns.as_fd().as_raw_fd();
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .env_clear()
        .env("PATH", "/bin")
        .current_dir("/");
    let cwd = cwd.to_path_buf();
    // SAFETY: the closure only makes syscalls (setns, unshare, chdir, setgid,
    // setuid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: fd stays open in the parent for the child's lifetime.
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            view::enter(ns)?;
            std::env::set_current_dir(&cwd)?;
            if uid != 0 {
                let groups = [uid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn teardown(f: &Fixture, ns: std::os::fd::OwnedFd, lease: cache::Lease, cache: Cache) {
    drop(ns);
    cache.release(lease, Duration::ZERO).unwrap();
    assert_eq!(
        loops_left_backed_by(&f.image),
        Vec::<String>::new(),
        "loop device left behind"
    );
    assert!(mounts_under(&f.dir).is_empty(), "mounts left behind");
}

#[test]
fn a_task_sees_the_image_its_binds_and_nothing_else_of_the_host() {
    let f = fixture();
    let (ns, lease, cache) = build_view(&f, false, vec![]);
    let cwd = f.dir.join("work");
    let (rc, out, _) = run_in(&ns, 5001, &cwd, &["/bin/cat", "/hello.txt", "input.txt"]);
    assert_eq!(
        (rc, out.as_str()),
        (0, "hello from the image\nfrom the host\n")
    );
    let (_, out, _) = run_in(&ns, 5001, &cwd, &["/bin/id"]);
    assert_eq!(
        out.trim(),
        "uid=5001(berthtest) gid=5001(berthtest) groups=5001(berthtest)"
    );
    let (_, out, _) = run_in(&ns, 5001, &cwd, &["/bin/pwd"]);
    assert_eq!(out.trim(), cwd.to_str().unwrap());
    // The host's /proc, /dev; nothing of the host's root (/work, /var/tmp/...).
    assert_eq!(
        run_in(&ns, 5001, &cwd, &["/bin/test", "-e", "/proc/self/status"]).0,
        0
    );
    assert_eq!(
        run_in(&ns, 5001, &cwd, &["/bin/test", "-c", "/dev/null"]).0,
        0
    );
    assert_ne!(
        run_in(&ns, 0, Path::new("/"), &["/bin/test", "-e", "/work"]).0,
        0
    );
    assert_ne!(
        run_in(
            &ns,
            0,
            Path::new("/"),
            &["/bin/test", "-e", "/usr/sbin/slurmd"]
        )
        .0,
        0
    );
    // `..` from the root stays in the image.
    let (_, out, _) = run_in(&ns, 0, Path::new("/"), &["/bin/cat", "/../../hello.txt"]);
    assert_eq!(out, "hello from the image\n");
    // Read-only root.
    let (rc, _, err) = run_in(&ns, 0, Path::new("/"), &["/bin/touch", "/new-file"]);
    assert_ne!(rc, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    teardown(&f, ns, lease, cache);
}

#[test]
fn setuid_files_and_device_nodes_of_the_image_give_nothing() {
    let f = fixture();
    let (ns, lease, cache) = build_view(&f, false, vec![]);
    let (rc, out, _) = run_in(
        &ns,
        5001,
        Path::new("/"),
        &["/bin/busybox-suid", "id", "-u"],
    );
    assert_eq!((rc, out.trim()), (0, "5001"), "setuid bit ignored (nosuid)");
    // (busybox may drop privileges itself: check the mount flags too.)
    let (_, out, _) = run_in(
        &ns,
        5001,
        Path::new("/"),
        &["/bin/grep", " / / ", "/proc/self/mountinfo"],
    );
    let opts = out.split(' ').nth(5).unwrap_or_default().to_string();
    assert!(
        opts.contains("nosuid") && opts.contains("nodev"),
        "root mounted {opts}"
    );
    let (rc, _, err) = run_in(&ns, 0, Path::new("/"), &["/bin/head", "-c1", "/image-null"]);
    assert_ne!(rc, 0, "the image's device node must not open (nodev)");
    assert!(err.contains("Permission denied"), "{err}");
    teardown(&f, ns, lease, cache);
}

#[test]
fn writable_roots_and_read_only_binds() {
    let f = fixture();
    let data = f.dir.join("data");
    fs::create_dir_all(&data).unwrap();
    let bind = Bind {
        source: data.clone(),
        target: "/data".into(),
        read_only: true,
        origin: Origin::User,
    };
    let (ns, lease, cache) = build_view(&f, true, vec![bind]);
    assert_eq!(
        run_in(&ns, 0, Path::new("/"), &["/bin/touch", "/new-file"]).0,
        0,
        "writable root"
    );
    let (rc, _, err) = run_in(&ns, 0, Path::new("/"), &["/bin/touch", "/data/x"]);
    assert_ne!(rc, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!data.join("x").exists());
    // Each task has a namespace of its own: a mount in one is not in the next.
    let (rc, _, _) = run_in(
        &ns,
        0,
        Path::new("/"),
        &["/bin/mount", "-t", "tmpfs", "t", "/opt"],
    );
    assert_eq!(rc, 0);
    let (_, out, _) = run_in(
        &ns,
        0,
        Path::new("/"),
        &["/bin/grep", "-c", " /opt ", "/proc/self/mountinfo"],
    );
    assert_eq!(out.trim(), "0");
    teardown(&f, ns, lease, cache);
}

/// The mount options (mountinfo field 6) of `target` as a task sees them.
fn mount_opts_in(ns: &std::os::fd::OwnedFd, target: &str) -> String {
    let (_, out, _) = run_in(
        ns,
        5001,
        Path::new("/"),
        &["/bin/cat", "/proc/self/mountinfo"],
    );
    out.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .rfind(|f| f.get(4) == Some(&target))
        .map(|f| f[5].to_string())
        .unwrap_or_default()
}

/// A static setuid-root program in the host's /tmp that prints its euid.
fn host_setuid_euid_printer(dir: &Path) -> PathBuf {
    let src = dir.join("euid.c");
    fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n",
    )
    .unwrap();
    let bin = tempfile::Builder::new()
        .prefix("berth-euid-")
        .tempfile_in("/tmp")
        .unwrap()
        .into_temp_path()
        .keep()
        .unwrap();
    let ok = Command::new("cc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc -static must work");
    std::os::unix::fs::PermissionsExt::set_mode(&mut fs::metadata(&bin).unwrap().permissions(), 0);
    fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    bin
}

#[test]
fn tasks_have_no_new_privs_and_host_setuid_binaries_under_system_binds_give_nothing() {
    let f = fixture();
    let euid = host_setuid_euid_printer(&f.dir);
    let (ns, lease, cache) = build_view(&f, false, vec![]);
    let (_, out, _) = run_in(
        &ns,
        5001,
        Path::new("/"),
        &["/bin/grep", "NoNewPrivs", "/proc/self/status"],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "1"]
    );
    let (rc, out, err) = run_in(&ns, 5001, Path::new("/"), &[euid.to_str().unwrap()]);
    fs::remove_file(&euid).unwrap();
    assert_eq!(
        (rc, out.trim()),
        (0, "5001"),
        "setuid-root host binary ran as root: {err}"
    );
    for t in ["/tmp", "/proc", "/sys"] {
        let opts = mount_opts_in(&ns, t);
        assert!(
            opts.contains("nosuid") && opts.contains("nodev"),
            "{t}: {opts}"
        );
    }
    let opts = mount_opts_in(&ns, "/dev");
    assert!(
        opts.contains("nosuid") && !opts.contains("nodev"),
        "/dev: {opts}"
    );
    teardown(&f, ns, lease, cache);
}

#[test]
fn a_device_node_under_a_user_bind_gives_nothing() {
    let f = fixture();
    let data = f.dir.join("data");
    fs::create_dir_all(&data).unwrap();
    let status = Command::new("mknod")
        .arg(data.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(
        data.join("null"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let bind = Bind {
        source: data.clone(),
        target: "/data".into(),
        read_only: false,
        origin: Origin::User,
    };
    let (ns, lease, cache) = build_view(&f, false, vec![bind]);
    let (rc, _, err) = run_in(&ns, 0, Path::new("/"), &["/bin/head", "-c1", "/data/null"]);
    assert_ne!(
        rc, 0,
        "a host device node under a bind must not open (nodev)"
    );
    assert!(err.contains("Permission denied"), "{err}");
    teardown(&f, ns, lease, cache);
}

/// Whether the host's namespace has a mount at `path`.
fn host_has_mount_at(path: &Path) -> bool {
    mounts_under(path).iter().any(|m| Path::new(m) == path)
}

fn mount_tmpfs(target: &Path) {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "berth-test"])
        .arg(target)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn propagation_both_ways(shared: bool) {
    let f = fixture();
    let data = f.dir.join("data");
    let inner = f.dir.join("inner");
    fs::create_dir_all(data.join("later")).unwrap();
    fs::create_dir_all(data.join("x")).unwrap();
    fs::create_dir_all(data.join("y")).unwrap();
    fs::create_dir_all(&inner).unwrap();
    fs::write(inner.join("mark"), "inner\n").unwrap();
    if shared {
        // Every systemd host: the parent mount is shared.
        let c = |args: &[&str]| {
            assert!(Command::new("mount").args(args).status().unwrap().success());
        };
        c(&["--bind", data.to_str().unwrap(), data.to_str().unwrap()]);
        c(&["--make-shared", data.to_str().unwrap()]);
    }
    let user = |s: &Path, t: &str| Bind {
        source: s.into(),
        target: t.into(),
        read_only: false,
        origin: Origin::User,
    };
    let binds = vec![user(&data, "/data"), user(&inner, "/data/x")];
    let (ns, lease, cache) = build_view(&f, false, binds);
    assert_eq!(
        run_in(&ns, 0, Path::new("/"), &["/bin/cat", "/data/x/mark"]).1,
        "inner\n"
    );
    assert!(
        !host_has_mount_at(&data.join("x")),
        "a container bind leaked onto the host"
    );
    // A task's own mount stays in the task.
    let (rc, _, _) = run_in(
        &ns,
        0,
        Path::new("/"),
        &["/bin/mount", "-t", "tmpfs", "t", "/data/y"],
    );
    assert_eq!(rc, 0);
    assert!(
        !host_has_mount_at(&data.join("y")),
        "a task's mount leaked onto the host"
    );
    // A host mount made later under the bound dir appears inside.
    mount_tmpfs(&data.join("later"));
    fs::write(data.join("later/mark"), "later\n").unwrap();
    let (_, out, _) = run_in(&ns, 0, Path::new("/"), &["/bin/cat", "/data/later/mark"]);
    crate::sys_umount(&data.join("later"));
    if shared {
        crate::sys_umount(&data);
    }
    // (Only a shared host mount has anything to propagate.)
    if shared {
        assert_eq!(out, "later\n", "host mount made later did not propagate in");
    }
    teardown(&f, ns, lease, cache);
}

fn sys_umount(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: umount2 with a NUL-terminated path.
    assert_eq!(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }, 0);
}

#[test]
fn binds_are_slaves_host_mounts_come_in_nothing_goes_out() {
    propagation_both_ways(false);
}

#[test]
fn binds_are_slaves_also_when_the_host_mounts_are_shared() {
    propagation_both_ways(true);
}

#[test]
fn the_writable_tmpfs_is_bounded() {
    let f = fixture();
    let (ns, lease, cache) = build_view(&f, true, vec![]);
    let (rc, _, err) = run_in(
        &ns,
        0,
        Path::new("/"),
        &["/bin/sh", "-c", "head -c 70000000 /dev/zero > /big"],
    );
    assert_ne!(rc, 0, "wrote 70 MB into a 64 MiB tmpfs: {err}");
    let (_, out, _) = run_in(&ns, 0, Path::new("/"), &["/bin/stat", "-c", "%s", "/big"]);
    let size: u64 = out.trim().parse().unwrap();
    assert!(size <= 64 << 20, "{size}");
    teardown(&f, ns, lease, cache);
}

#[test]
fn bind_targets_are_resolved_inside_the_root_and_refused_on_system_dirs() {
    let f = fixture_with(|root| std::os::unix::fs::symlink("/dev", root.join("d")).unwrap());
    let data = f.dir.join("data");
    fs::create_dir_all(&data).unwrap();
    for target in ["/d/shm/x", "/bin/..", "/tmp/../proc/sys/kernel", "/d"] {
        let bind = Bind {
            source: data.clone(),
            target: target.into(),
            read_only: false,
            origin: Origin::User,
        };
        let err = match try_build_view(&f, false, vec![bind]) {
            Ok((ns, lease, cache)) => {
                teardown(&f, ns, lease, cache);
                panic!("{target}: bound");
            }
            Err(e) => e,
        };
        assert!(
            matches!(err, view::ViewError::ForbiddenTarget { .. }),
            "{target}: {err}"
        );
        assert!(mounts_under(&f.dir).is_empty() || !mounts_under(&f.dir).is_empty());
    }
    let _ = cache::Cache::new(&f.run_dir).reap(Duration::ZERO);
    assert!(mounts_under(&f.dir).is_empty(), "mounts left behind");
}

/// `berth gc` as the timer runs it; its stdout.
fn berth_gc(run_dir: &Path, idle: &str, dry: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["gc", "--run-dir"]).arg(run_dir);
    cmd.args(["--idle-seconds", idle]);
    if dry {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn berth_gc_keeps_an_image_in_use_and_releases_it_once_its_holder_is_killed() {
    let f = fixture();
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&f.image);
    // A stand-in slurmstepd, SIGKILLed later.
    let mut stepd = Command::new("sleep").arg("600").spawn().unwrap();
    let holder = Holder {
        pid: stepd.id(),
        start: berth::reconcile::process::start_time(stepd.id() as i32).unwrap(),
    };
    let lease = cache
        .acquire(&file, &key, holder, Duration::from_secs(300))
        .unwrap();
    drop(file);
    let root = lease.root.clone();
    assert_eq!(berth_gc(&f.run_dir, "0", false), "", "in use: kept");
    assert!(cache::is_mounted(&root));
    stepd.kill().unwrap();
    stepd.wait().unwrap();
    let planned = berth_gc(&f.run_dir, "0", true);
    assert_eq!(
        planned,
        format!(
            "would drop 1 dead holder(s)\nwould unmount {}\n",
            root.display()
        )
    );
    assert!(cache::is_mounted(&root), "a dry run changes nothing");
    let done = berth_gc(&f.run_dir, "0", false);
    assert_eq!(
        done,
        format!("drop 1 dead holder(s)\nunmount {}\n", root.display())
    );
    assert!(!root.exists());
    assert_eq!(loops_left_backed_by(&f.image), Vec::<String>::new());
    assert!(mounts_under(&f.dir).is_empty());
}

#[test]
fn berth_gc_unmounts_an_image_idle_past_the_idle_time_with_no_further_step() {
    let f = fixture();
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&f.image);
    let me = Holder::current().unwrap();
    let lease = cache
        .acquire(&file, &key, me, Duration::from_secs(300))
        .unwrap();
    drop(file);
    let root = lease.root.clone();
    cache.release(lease, Duration::from_secs(300)).unwrap();
    assert_eq!(berth_gc(&f.run_dir, "2", false), "", "not idle long enough");
    assert!(cache::is_mounted(&root));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        berth_gc(&f.run_dir, "2", false),
        format!("unmount {}\n", root.display())
    );
    assert_eq!(loops_left_backed_by(&f.image), Vec::<String>::new());
    assert!(mounts_under(&f.dir).is_empty());
}

#[test]
fn berth_gc_releases_an_image_whose_file_was_deleted_at_once() {
    let f = fixture();
    let cache = Cache::new(&f.run_dir);
    let (file, key) = key_of(&f.image);
    let me = Holder::current().unwrap();
    let lease = cache
        .acquire(&file, &key, me, Duration::from_secs(300))
        .unwrap();
    drop(file);
    let root = lease.root.clone();
    cache.release(lease, Duration::from_secs(300)).unwrap();
    assert_eq!(
        berth_gc(&f.run_dir, "300", false),
        "",
        "idle, file still there"
    );
    fs::remove_file(&f.image).unwrap();
    assert_eq!(
        berth_gc(&f.run_dir, "300", false),
        format!("unmount {}\n", root.display())
    );
    assert!(mounts_under(&f.dir).is_empty());
}
