//! A minimal root filesystem made of a static busybox, for tests and demos.
//!
//! The result: `/bin/busybox` with a symlink per applet where busybox says the applet
//! lives (`/bin/sh`, `/usr/bin/env`, ...), `/etc/passwd` and `/etc/group` with root,
//! and the usual mount points (`/proc`, `/sys`, `/dev`, `/tmp`, `/home`, ...).
//! Recipe from the command line:
//!
//! ```text
//! berth sif build --busybox busybox.sif
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sif::error::SifError;
use crate::sif::Result;

/// Where busybox-static puts busybox, in the order they are tried.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The host's static busybox: `$BERTH_BUSYBOX` if set, else the first of
/// [`BUSYBOX_CANDIDATES`] that exists.
pub fn find_busybox() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_BUSYBOX") {
        return Ok(PathBuf::from(path));
    }
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            SifError::input(
                BUSYBOX_CANDIDATES[0],
                "no busybox found (install the Debian package busybox-static, or set BERTH_BUSYBOX)",
            )
        })
}

/// Makes a busybox rootfs in `dir` (created if missing) from the host's static busybox.
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    busybox_rootfs_from(dir, &find_busybox()?)
}

/// Makes a busybox rootfs in `dir` from the static busybox at `busybox`.
pub fn busybox_rootfs_from(dir: &Path, busybox: &Path) -> Result<()> {
    let binary = fs::read(busybox).map_err(|e| SifError::io(busybox, "read busybox", e))?;
    match has_interpreter(&binary) {
        None => return Err(SifError::input(busybox, "not an ELF executable")),
        Some(true) => {
            return Err(SifError::input(
                busybox,
                "busybox is dynamically linked; install the Debian package busybox-static",
            ))
        }
        Some(false) => {}
    }
    let io_err = |path: &Path, e: io::Error| SifError::io(path, "create the busybox rootfs", e);
    for (path, mode) in MOUNT_POINTS {
        let p = dir.join(path);
        fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(|e| io_err(&p, e))?;
    }
    let target = dir.join("bin/busybox");
    fs::write(&target, &binary).map_err(|e| io_err(&target, e))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(|e| io_err(&target, e))?;
    // Ask the original for its applets: running the fresh copy could fail with
    // ETXTBSY while a concurrently forked child still holds its write descriptor.
    for applet in applets(busybox)? {
        link_applet(dir, &applet).map_err(|e| io_err(&dir.join(&applet), e))?;
    }
    for (path, text) in ETC_FILES {
        let p = dir.join(path);
        if !p.exists() {
            fs::write(&p, text).map_err(|e| io_err(&p, e))?;
        }
    }
    Ok(())
}

/// Directories of the rootfs and their modes.
const MOUNT_POINTS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("tmp", 0o1777),
    ("var/tmp", 0o1777),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("home", 0o755),
    ("root", 0o700),
    ("run", 0o755),
];

const ETC_FILES: &[(&str, &str)] = &[
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost\n"),
];

/// The applets busybox has, as paths relative to the root (`bin/sh`, `usr/bin/env`).
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|source| SifError::Spawn {
            program: busybox.display().to_string(),
            package: "busybox-static",
            source,
        })?;
    if !out.status.success() {
        return Err(SifError::ToolFailed {
            program: format!("{} --list-full", busybox.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.contains("..") && l != "bin/busybox")
        .collect())
}

/// Links `applet` (e.g. `usr/bin/env`) to `/bin/busybox` with a relative symlink.
fn link_applet(root: &Path, applet: &str) -> io::Result<()> {
    let path = root.join(applet);
    if path.symlink_metadata().is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let target = if Path::new(applet).parent() == Some(Path::new("bin")) {
        "busybox".to_string()
    } else {
        format!("{}bin/busybox", "../".repeat(applet.matches('/').count()))
    };
    symlink(target, path)
}

/// Whether the ELF file `bytes` asks for a program interpreter (is dynamically
/// linked); `None` if it is not ELF.
pub fn has_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = *bytes.get(4)? == 2;
    let big = *bytes.get(5)? == 2;
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let u64_at = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(if big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u64::from(u32_at(0x1c)?), u16_at(0x2a)?, u16_at(0x2c)?)
    };
    let phoff = usize::try_from(phoff).ok()?;
    for i in 0..usize::from(phnum) {
        let at = phoff.checked_add(i.checked_mul(usize::from(phentsize))?)?;
        if u32_at(at)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_executables() {
        let dynamic = fs::read("/bin/ls").unwrap();
        assert_eq!(has_interpreter(&dynamic), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
        if let Ok(busybox) = find_busybox() {
            assert_eq!(has_interpreter(&fs::read(busybox).unwrap()), Some(false));
        }
    }

    #[test]
    fn applet_links_are_relative() {
        let dir = tempfile::tempdir().unwrap();
        link_applet(dir.path(), "usr/bin/env").unwrap();
        link_applet(dir.path(), "bin/sh").unwrap();
        assert_eq!(
            fs::read_link(dir.path().join("usr/bin/env")).unwrap(),
            Path::new("../../bin/busybox")
        );
        assert_eq!(
            fs::read_link(dir.path().join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }
}
