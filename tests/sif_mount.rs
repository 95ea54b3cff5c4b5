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
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::sif::build::{self, BuildOptions};
use berth::sif::{Image, Partition};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h, Linux 5.8+).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(ret)
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Moves this thread into a new mount namespace where nothing propagates back.
fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain syscalls with valid, NUL-terminated arguments.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "make / private",
        )?;
    }
    Ok(())
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

    fn attach(image: &File, partition: &Partition) -> io::Result<LoopDevice> {
        let control = File::open("/dev/loop-control")?;
        let mut last = None;
        for _ in 0..20 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument.
            let number = check(
                unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) },
                "LOOP_CTL_GET_FREE",
            )?;
            let dev = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(format!("/dev/loop{number}"))?;
            // SAFETY: all-zero is a valid loop_config.
            let mut config: LoopConfig = unsafe { std::mem::zeroed() };
            config.fd = image.as_raw_fd() as u32;
            config.info.lo_offset = partition.offset;
            config.info.lo_sizelimit = partition.size;
            config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
            // SAFETY: config is a valid loop_config that outlives the call.
            let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &config) };
            if ret == 0 {
                return Ok(LoopDevice {
                    fd: dev.into(),
                    number,
                });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(io::Error::new(e.kind(), format!("LOOP_CONFIGURE: {e}")));
            }
            // Someone else took this device between GET_FREE and CONFIGURE.
            last = Some(e);
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
        let (dev, dir) = (cstr(device), cstr(target));
        // SAFETY: valid NUL-terminated strings; no data argument.
        check(
            unsafe {
                libc::mount(
                    dev.as_ptr(),
                    dir.as_ptr(),
                    c"squashfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                    std::ptr::null(),
                )
            },
            "mount squashfs",
        )?;
        Ok(Mounted(target.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let dir = cstr(&self.0);
        // SAFETY: valid NUL-terminated path.
        unsafe { libc::umount2(dir.as_ptr(), 0) };
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
    let mut image = Image::open(image_path).unwrap();
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
