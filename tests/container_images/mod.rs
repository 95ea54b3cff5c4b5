//! Test images for the container tests: a busybox-static root filesystem
//! with a few marker files, packed as a bare squashfs (mksquashfs) or a SIF.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const APPLETS: &[&str] = &[
    "sh", "id", "cat", "ls", "env", "pwd", "true", "false", "stat", "grep", "echo", "touch",
    "mount", "readlink", "test", "whoami", "sleep", "printenv", "head",
];

/// Builds a busybox-static root in `dir` and returns it.
pub fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in [
        "bin",
        "etc",
        "tmp",
        "proc",
        "sys",
        "dev",
        ".singularity.d/env",
        "opt/app/bin",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static must be installed");
    for a in APPLETS {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    fs::write(root.join("hello.txt"), "hello from the image\n").unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nimguser:x:5001:5001::/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(
        root.join(".singularity.d/env/90-environment.sh"),
        "#!/bin/sh\nexport FOO=image\nexport PATH=/opt/app/bin:$PATH\n",
    )
    .unwrap();
    // A setuid-root copy of busybox: must not raise privileges (nosuid).
    fs::copy("/bin/busybox", root.join("bin/busybox-suid")).unwrap();
    fs::set_permissions(
        root.join("bin/busybox-suid"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    // A device node (/dev/null's numbers): must not work (nodev).
    let node = root.join("image-null");
    let status = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(&node, fs::Permissions::from_mode(0o666)).unwrap();
    root
}

/// `mksquashfs ROOT OUT` (test setup only: berth itself never runs tools).
pub fn squashfs(root: &Path, out: &Path, extra: &[&str]) {
    let status = Command::new("mksquashfs")
        .arg(root)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress", "-all-root"])
        .args(extra)
        .status()
        .expect("mksquashfs (squashfs-tools) must be installed");
    assert!(status.success());
}

/// Loop devices backed by `file` (from sysfs).
pub fn loops_backed_by(file: &Path) -> Vec<String> {
    let target = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mut out = Vec::new();
    for e in fs::read_dir("/sys/block").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file")) {
            let b = b.trim().trim_end_matches(" (deleted)");
            if Path::new(b) == target {
                out.push(name);
            }
        }
    }
    out
}

/// The loop devices still backed by `file` after waiting up to 5 s: the
/// kernel detaches an autoclear loop device asynchronously after its last
/// user lets go.
pub fn loops_left_backed_by(file: &Path) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = loops_backed_by(file);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Mount points in this process's namespace under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_string)
        .collect()
}
