//! The image named by `--container`: opened once with the user's rights (in
//! `user_init`, where the effective uid is the user's and the working
//! directory is the job's), recognised, and its root filesystem located.
//! The same descriptor is later handed to the loop device, so what was
//! checked is what gets mounted.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::cache::{Extent, Key};
use crate::sif::{self, Problem, SifError};

/// An opened image and where its root filesystem lies in it.
#[derive(Debug)]
pub struct OpenedImage {
    pub path: PathBuf,
    pub file: File,
    pub extent: Extent,
    pub key: Key,
}

/// What `--container` named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sif,
    /// A bare squashfs file (Apptainer runs those too).
    Squashfs,
    /// Anything else (an OCI bundle directory, some other file).
    Other,
}

/// Why an image cannot be used; the text reaches the user.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "{reference} is a registry or URL reference; --container takes a SIF file on a filesystem \
         this node sees: make one first (e.g. `apptainer pull img.sif {reference}`, or \
         `berth sif build img.sif DIR` from a directory) and pass its path"
    )]
    Remote { reference: String },
    #[error(
        "image {path} starts with '~', which the shell does not expand after '=': write \
         --container ~/{rest} (with a space), or --container=$HOME/{rest}"
    )]
    Tilde { path: PathBuf, rest: String },
    #[error("image {path} does not exist; check the path given to --container (relative paths start in the job's working directory)")]
    Missing { path: PathBuf },
    #[error("you cannot read image {path} (permission denied); make the image readable to you, or copy it somewhere you can read")]
    Denied { path: PathBuf },
    #[error("cannot open image {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{path} is not a SIF image{detail}; --container takes a Singularity/Apptainer .sif file \
         (this cluster does not configure Slurm's OCI bundles: there is no oci.conf)"
    )]
    NotSif { path: PathBuf, detail: String },
    #[error("{path} is a damaged SIF image ({problem}); rebuild it or copy it again")]
    Corrupt { path: PathBuf, problem: String },
    #[error("{path} has no root filesystem ({problem}); build it with `apptainer build` or `berth sif build`")]
    NoRoot { path: PathBuf, problem: String },
    #[error("{path} cannot run on this node: {problem}; use an image built for this node's architecture")]
    WrongArch { path: PathBuf, problem: String },
    #[error("{path} cannot be mounted: {problem}")]
    Unmountable { path: PathBuf, problem: String },
}

/// URL schemes users bring from Apptainer, enroot and pyxis (`scheme://...`).
const REMOTE_SCHEMES: &[&str] = &[
    "docker",
    "docker-archive",
    "docker-daemon",
    "library",
    "oras",
    "shub",
    "http",
    "https",
    "oci",
    "oci-archive",
];

/// Refuses what cannot name a file berth opens: a registry or URL reference, or a path
/// whose `~` the shell left unexpanded.
pub fn check_reference(path: &Path) -> Result<(), ImageError> {
    let text = path.to_string_lossy();
    if let Some((scheme, _)) = text.split_once("://") {
        if REMOTE_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(ImageError::Remote {
                reference: text.into_owned(),
            });
        }
    }
    if let Some(rest) = text.strip_prefix("~/") {
        return Err(ImageError::Tilde {
            path: path.into(),
            rest: rest.to_string(),
        });
    }
    Ok(())
}

/// Opens `path` for reading with the calling (user's) credentials.
pub fn open_as_user(path: &Path) -> Result<File, ImageError> {
    check_reference(path)?;
    File::options()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => ImageError::Missing { path: path.into() },
            io::ErrorKind::PermissionDenied => ImageError::Denied { path: path.into() },
            _ => ImageError::Io {
                path: path.into(),
                error,
            },
        })
}

/// Recognises the image by its first bytes (a directory is `Other`).
pub fn sniff(file: &File) -> Kind {
    let mut head = [0u8; 64];
    let mut len = 0;
    let mut reader = file;
    while len < head.len() {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Kind::Other,
        }
    }
    kind_of(&head[..len])
}

pub fn kind_of(head: &[u8]) -> Kind {
    if head.len() >= 42 && &head[32..42] == b"SIF_MAGIC\0" {
        Kind::Sif
    } else if head.starts_with(b"hsqs") {
        Kind::Squashfs
    } else {
        Kind::Other
    }
}

/// Where the root filesystem of a recognised image lies; `None` for an
/// image that is neither SIF nor squashfs when `oci_conf` says Slurm runs
/// those itself.
pub fn locate(path: &Path, file: File, oci_conf: bool) -> Result<Option<OpenedImage>, ImageError> {
    let io_err = |error| ImageError::Io {
        path: path.into(),
        error,
    };
    let meta = file.metadata().map_err(io_err)?;
    let kind = if meta.is_file() {
        sniff(&file)
    } else {
        Kind::Other
    };
    let (file, extent) = match kind {
        Kind::Other if oci_conf => return Ok(None),
        Kind::Other => {
            let detail = if meta.is_dir() {
                " (it is a directory)".to_string()
            } else {
                String::new()
            };
            return Err(ImageError::NotSif {
                path: path.into(),
                detail,
            });
        }
        Kind::Squashfs => {
            check_bare_superblock(path, &file, meta.len())?;
            (
                file,
                Extent {
                    offset: 0,
                    size: meta.len(),
                },
            )
        }
        Kind::Sif => sif_root(path, file)?,
    };
    let key = Key::of(&meta, extent);
    Ok(Some(OpenedImage {
        path: path.into(),
        file,
        extent,
        key,
    }))
}

/// A bare squashfs gets the superblock checks a SIF's partition gets, before the
/// kernel's driver sees it.
fn check_bare_superblock(path: &Path, file: &File, size: u64) -> Result<(), ImageError> {
    use std::os::unix::fs::FileExt;
    let mut raw = [0u8; sif::squashfs::SUPERBLOCK_LEN];
    let unmountable = |problem: String| ImageError::Unmountable {
        path: path.into(),
        problem,
    };
    match file.read_exact_at(&mut raw, 0) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(unmountable(
                "it is shorter than a squashfs superblock".into(),
            ))
        }
        other => other.map_err(|error| ImageError::Io {
            path: path.into(),
            error,
        })?,
    }
    sif::squashfs::Superblock::parse(&raw)
        .check(0, size)
        .map_err(|problem| {
            unmountable(
                problem
                    .to_string()
                    .replace("primary partition (object 0): ", ""),
            )
        })
}

/// The SIF image's primary partition, checked to run here (valid layout, a
/// squashfs the kernel can mount, an architecture this node runs).
fn sif_root(path: &Path, file: File) -> Result<(File, Extent), ImageError> {
    let checked = sif::Image::from_file_named(file, path)
        .and_then(|image| Ok((image.check_runnable_on_host()?, image)));
    match checked {
        Ok((partition, image)) => Ok((
            image.into_file(),
            Extent {
                offset: partition.offset,
                size: partition.size,
            },
        )),
        Err(e) => Err(sif_error(path, e)),
    }
}

/// Sorts the SIF module's findings into what the user should do.
fn sif_error(path: &Path, e: SifError) -> ImageError {
    let path = path.to_path_buf();
    let Some(problem) = e.problem() else {
        return ImageError::Corrupt {
            path,
            problem: e.to_string(),
        };
    };
    let text = problem.to_string();
    match problem {
        Problem::BadMagic { .. } => ImageError::NotSif {
            path,
            detail: format!(" ({text})"),
        },
        Problem::NoPrimaryPartition => ImageError::NoRoot {
            path,
            problem: text,
        },
        Problem::ArchMismatch { .. } => ImageError::WrongArch {
            path,
            problem: text,
        },
        Problem::NotSquashfs { .. } | Problem::SquashfsCompressionUnsupported { .. } => {
            ImageError::Unmountable {
                path,
                problem: text,
            }
        }
        _ => ImageError::Corrupt {
            path,
            problem: text,
        },
    }
}

/// Whether Slurm's own OCI container support is configured (oci.conf next
/// to slurm.conf): then `--container` values that are not images are Slurm's.
pub fn oci_conf_exists() -> bool {
    let conf = std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/slurm/slurm.conf"));
    conf.parent()
        .map(|d| d.join("oci.conf"))
        .is_some_and(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_squashfs_with_a_bad_superblock_never_reaches_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.sqfs");
        let mut raw = vec![0u8; 4096];
        raw[..4].copy_from_slice(b"hsqs");
        raw[28..30].copy_from_slice(&3u16.to_le_bytes()); // version 3.0
        std::fs::write(&path, &raw).unwrap();
        let err = locate(&path, File::open(&path).unwrap(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} cannot be mounted: squashfs version is 3.0; the kernel mounts version 4.0",
                path.display()
            )
        );
    }

    #[test]
    fn kinds_by_magic() {
        let mut sif = vec![0u8; 64];
        sif[32..42].copy_from_slice(b"SIF_MAGIC\0");
        assert_eq!(kind_of(&sif), Kind::Sif);
        assert_eq!(kind_of(b"hsqs\x01\x00"), Kind::Squashfs);
        assert_eq!(kind_of(b"#!/bin/sh\n"), Kind::Other);
        assert_eq!(kind_of(b""), Kind::Other);
    }

    #[test]
    fn registry_references_and_an_unexpanded_tilde_are_explained() {
        for reference in [
            "docker://ubuntu:22.04",
            "library://alpine",
            "oras://r/x:1",
            "HTTPS://h/x.sif",
        ] {
            let err = open_as_user(Path::new(reference)).unwrap_err();
            assert!(
                matches!(err, ImageError::Remote { .. }),
                "{reference}: {err}"
            );
            assert!(err.to_string().contains("apptainer pull img.sif"), "{err}");
        }
        let err = open_as_user(Path::new("~/x.sif")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image ~/x.sif starts with '~', which the shell does not expand after '=': write \
             --container ~/x.sif (with a space), or --container=$HOME/x.sif"
        );
    }

    #[test]
    fn missing_and_unreadable_images_say_so() {
        let err = open_as_user(Path::new("/nonexistent/img.sif")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("image /nonexistent/img.sif does not exist;"));
    }

    #[test]
    fn other_files_are_not_sif_unless_slurm_runs_oci() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        std::fs::write(&p, "hello").unwrap();
        let err = locate(&p, File::open(&p).unwrap(), false).unwrap_err();
        assert!(matches!(err, ImageError::NotSif { .. }), "{err}");
        assert!(locate(&p, File::open(&p).unwrap(), true).unwrap().is_none());
        let err = locate(dir.path(), File::open(dir.path()).unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("(it is a directory)"), "{err}");
    }

    #[test]
    fn a_bare_squashfs_is_mounted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.sqfs");
        let mut raw = vec![0u8; 4096];
        raw[..4].copy_from_slice(b"hsqs");
        raw[12..16].copy_from_slice(&(128u32 << 10).to_le_bytes());
        raw[20..22].copy_from_slice(&1u16.to_le_bytes()); // gzip
        raw[22..24].copy_from_slice(&17u16.to_le_bytes());
        raw[28..30].copy_from_slice(&4u16.to_le_bytes());
        raw[40..48].copy_from_slice(&4096u64.to_le_bytes());
        std::fs::write(&p, &raw).unwrap();
        let img = locate(&p, File::open(&p).unwrap(), false).unwrap().unwrap();
        assert_eq!(
            img.extent,
            Extent {
                offset: 0,
                size: 4096
            }
        );
        std::fs::write(&p, b"hsqs and more").unwrap();
        let err = locate(&p, File::open(&p).unwrap(), false).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("cannot be mounted: it is shorter than a squashfs superblock"),
            "{err}"
        );
    }
}
