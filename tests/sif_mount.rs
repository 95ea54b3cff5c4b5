//! The kernel mounts an image `berth sif build` wrote, the way berth mounts images: a
//! read-only loop device over the image file limited to the root partition (offset
//! and size limit, set with LOOP_CONFIGURE), then a read-only squashfs mount. A
//! busybox inside it then runs. Needs root; skips, saying so, without it.
//!
//! Everything happens in a private mount namespace of the test's thread, and the loop
//! device is autoclear, so nothing outlives the test even if it fails half-way; the
//! mount is also undone explicitly and the loop device checked to be released.

#[path = "sif_support/mod.rs"]
mod support;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::container::sys;
use berth::sif::build::{self, BuildOptions};
use berth::sif::{Image, Partition};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Moves this thread into a new mount namespace where nothing propagates back.
fn private_mount_namespace() -> io::Result<()> {
    sys::unshare_mount_ns()?;
    sys::make_mounts_private()
}

/// A loop device set up over `partition` of `image`, read-only and autoclear: it goes
/// away when the last user (this fd, then the mount) lets go.
struct LoopDevice {
    fd: OwnedFd,
    number: i32,
}

impl LoopDevice {
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.number))
    }

    /// The same calls berth makes (`berth::container::sys`), retried when another
    /// process takes the free device between GET_FREE and CONFIGURE.
    fn attach(image: &File, partition: &Partition) -> io::Result<LoopDevice> {
        let control = File::open("/dev/loop-control")?;
        let mut last = None;
        for _ in 0..20 {
            let number = sys::loop_get_free(control.as_fd())?;
            let dev = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(format!("/dev/loop{number}"))?;
            match sys::loop_configure(dev.as_fd(), image.as_fd(), partition.offset, partition.size)
            {
                Ok(()) => {
                    return Ok(LoopDevice {
                        fd: dev.into(),
                        number: number as i32,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap())
    }

    fn sysfs(&self, file: &str) -> Option<String> {
        fs::read_to_string(format!("/sys/block/loop{}/{file}", self.number))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// A mount undone when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn squashfs(device: &Path, target: &Path) -> io::Result<Mounted> {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        sys::mount(Some(device), target, Some(c"squashfs"), flags, None)?;
        Ok(Mounted(target.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = sys::umount2(&self.0, 0);
    }
}

/// Runs `args` chrooted into `root` with a clean environment.
fn run_in(root: &Path, args: &[&str]) -> std::process::Output {
    let root = cstr(root);
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .current_dir("/");
    // SAFETY: chroot and chdir are async-signal-safe; `root` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// Waits (up to 5 s) until the loop device has let go of its backing file.
fn wait_released(number: i32) -> bool {
    let backing = format!("/sys/block/loop{number}/loop/backing_file");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !Path::new(&backing).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Mounts the root partition of `image_path` at `target` like berth does, runs `body`,
/// and cleans up; returns what `body` returned.
fn with_mounted_root<T>(image_path: &Path, target: &Path, body: impl FnOnce(&Path) -> T) -> T {
    let image = Image::open(image_path).unwrap();
    let partition = image.check_runnable_on_host().unwrap();
    let file = image.into_file();
    let device = LoopDevice::attach(&file, &partition).unwrap();
    assert_eq!(
        device.sysfs("loop/offset"),
        Some(partition.offset.to_string())
    );
    assert_eq!(
        device.sysfs("loop/sizelimit"),
        Some(partition.size.to_string())
    );
    assert_eq!(device.sysfs("ro").as_deref(), Some("1"));
    // The device ends where the partition ends: nothing after it is reachable.
    assert_eq!(
        device.sysfs("size"),
        Some((partition.size / 512).to_string())
    );
    fs::create_dir_all(target).unwrap();
    let mounted = Mounted::squashfs(&device.path(), target).unwrap();
    let number = device.number;
    drop(device.fd); // the mount now holds the loop device; autoclear frees it on umount
    let result = body(target);
    drop(mounted);
    assert!(
        wait_released(number),
        "loop{number} still attached after umount"
    );
    result
}

#[test]
fn the_kernel_mounts_a_built_image_and_its_busybox_runs() {
    if !is_root() {
        println!("skipping: mounting needs root (euid is not 0)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    build::busybox_rootfs(&rootfs).unwrap();
    let image_path = dir.path().join("busybox.sif");
    build::build(&rootfs, &image_path, &BuildOptions::reproducible(0)).unwrap();

    private_mount_namespace().unwrap();
    let target = dir.path().join("mnt");
    let (out, write_err) = with_mounted_root(&image_path, &target, |root| {
        let out = run_in(
            root,
            &[
                "/.singularity.d/actions/exec",
                "/bin/sh",
                "-c",
                "echo hello from $(uname -s) busybox; id -un; ls /.singularity.d/env",
            ],
        );
        let write_err = File::create(root.join("new-file")).unwrap_err();
        (out, write_err)
    });
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from Linux busybox\nroot\n01-base.sh\n90-environment.sh\n95-apps.sh\n\
         99-base.sh\n99-runtimevars.sh\n"
    );
    assert_eq!(write_err.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn the_kernel_mounts_the_reference_image_at_its_offset() {
    if !is_root() {
        println!("skipping: mounting needs root (euid is not 0)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    private_mount_namespace().unwrap();
    let target = dir.path().join("mnt");
    let hello = with_mounted_root(&support::corpus_file("one-group.sif"), &target, |root| {
        fs::read_to_string(root.join("hello.txt")).unwrap()
    });
    assert_eq!(hello, "Hello from Sylabs!\n");
}
