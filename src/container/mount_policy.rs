//! Which images the kernel's squashfs driver may mount for a user
//! (`squashfs_mount=`, `image_paths=`).
//!
//! The kernel parses the image's squashfs as root; a user who can write the file
//! can hand that driver crafted bytes, at any time, also after berth checked them.
//! Like Apptainer's `allow setuid-mount squashfs = iflimited`, the default
//! (`limited`) mounts an image only when the site vouches for where it lies
//! (`image_paths=`) or when no one but root can change it: the file and every
//! directory above it owned by root and not writable by a group other than root's
//! or by everyone (a root-owned sticky directory such as /tmp is fine: no one else
//! can replace root's entries in it). POSIX ACLs are not looked at.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::binds;
use super::image::OpenedImage;
use crate::config::SquashfsMount;

/// An image the site's policy does not let the kernel mount; the text reaches the user.
#[derive(Debug, thiserror::Error)]
pub enum MountPolicyError {
    #[error("cannot run --container={path}: this node mounts no images (squashfs_mount=no in berth's plugstack.conf line); ask your administrator")]
    Disabled { path: PathBuf },
    #[error("cannot run --container={path}: {writable} is {why}, so someone other than root could change the image while the kernel reads it; this site mounts only images that no one but root can change, or images under image_paths= ({allowed}) (squashfs_mount=limited in berth's plugstack.conf line); ask your administrator to install the image in one of those directories")]
    Writable {
        path: PathBuf,
        writable: PathBuf,
        why: String,
        allowed: String,
    },
}

/// Refuses `image` unless `policy` lets the kernel mount it.
pub fn check(
    image: &OpenedImage,
    policy: SquashfsMount,
    image_paths: &[PathBuf],
) -> Result<(), MountPolicyError> {
    match policy {
        SquashfsMount::Any => Ok(()),
        SquashfsMount::No => Err(MountPolicyError::Disabled {
            path: image.path.clone(),
        }),
        SquashfsMount::Limited => check_limited(image, image_paths),
    }
}

fn check_limited(image: &OpenedImage, image_paths: &[PathBuf]) -> Result<(), MountPolicyError> {
    let resolved = fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&image.file)
    ))
    .unwrap_or_else(|_| image.path.clone());
    if binds::allowed(&resolved, image_paths) {
        return Ok(());
    }
    let refused = |writable: &Path, why: String| MountPolicyError::Writable {
        path: image.path.clone(),
        writable: writable.to_path_buf(),
        why,
        allowed: if image_paths.is_empty() {
            "none set".into()
        } else {
            image_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
    };
    let file = image
        .file
        .metadata()
        .map_err(|e| refused(&resolved, format!("not checkable ({e})")))?;
    if let Some(why) = changeable_by_others(&file) {
        return Err(refused(&resolved, why));
    }
    for dir in resolved.ancestors().skip(1) {
        let meta =
            fs::symlink_metadata(dir).map_err(|e| refused(dir, format!("not checkable ({e})")))?;
        if let Some(why) = changeable_by_others(&meta) {
            return Err(refused(dir, why));
        }
    }
    Ok(())
}

/// Why someone other than root could change this file or directory's entries.
fn changeable_by_others(meta: &fs::Metadata) -> Option<String> {
    let mode = meta.mode();
    let root_sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    if meta.uid() != 0 {
        Some(format!("owned by uid {}", meta.uid()))
    } else if mode & 0o020 != 0 && meta.gid() != 0 && !root_sticky_dir {
        Some(format!("writable by group {}", meta.gid()))
    } else if mode & 0o002 != 0 && !root_sticky_dir {
        Some("writable by everyone".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cache::{Extent, Key};
    use std::os::unix::fs::PermissionsExt;

    fn opened(path: &Path) -> OpenedImage {
        let file = fs::File::open(path).unwrap();
        let meta = file.metadata().unwrap();
        let extent = Extent {
            offset: 0,
            size: meta.len(),
        };
        OpenedImage {
            path: path.into(),
            key: Key::of(&meta, extent),
            extent,
            file,
        }
    }

    /// A root-owned directory tree under target/ (the tests run as root).
    fn root_dir() -> tempfile::TempDir {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mount-policy-tests");
        fs::create_dir_all(&base).unwrap();
        tempfile::tempdir_in(&base).unwrap()
    }

    #[test]
    fn any_and_no_need_no_look() {
        let dir = root_dir();
        let img = dir.path().join("img.sif");
        fs::write(&img, b"x").unwrap();
        let image = opened(&img);
        assert!(check(&image, SquashfsMount::Any, &[]).is_ok());
        let err = check(&image, SquashfsMount::No, &[]).unwrap_err();
        assert!(err.to_string().contains("squashfs_mount=no"), "{err}");
    }

    #[test]
    fn limited_mounts_root_only_images_and_image_paths() {
        if !nix_is_root() {
            return;
        }
        let dir = root_dir();
        let img = dir.path().join("img.sif");
        fs::write(&img, b"x").unwrap();
        fs::set_permissions(&img, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check(&opened(&img), SquashfsMount::Limited, &[]).is_ok());
        // Group- and world-writable files, a user's file, a user-writable directory above.
        for (mode, owner) in [(0o664, 0), (0o646, 0), (0o644, 5001)] {
            fs::set_permissions(&img, fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&img, Some(owner), Some(100)).unwrap();
            let err = check(&opened(&img), SquashfsMount::Limited, &[]).unwrap_err();
            assert!(
                err.to_string().contains("image_paths= (none set)"),
                "{mode:o} {owner}: {err}"
            );
            // Under image_paths the site vouches for it.
            assert!(check(&opened(&img), SquashfsMount::Limited, &[dir.path().into()]).is_ok());
        }
        std::os::unix::fs::chown(&img, Some(0), Some(0)).unwrap();
        fs::set_permissions(&img, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(&opened(&img), SquashfsMount::Limited, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{} is writable by everyone", dir.path().display())),
            "{err}"
        );
        // A root-owned sticky directory (like /tmp) is fine.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check(&opened(&img), SquashfsMount::Limited, &[]).is_ok());
    }

    fn nix_is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
