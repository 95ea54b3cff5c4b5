//! What is bound into the image: the system directories, the site's list,
//! the user's home and working directory, the batch script, and the user's
//! `--container-mounts`. Planning is pure ([`plan`]); the user-influenced
//! sources are then opened with the user's rights ([`open_as_user`]), checked
//! against the site's `user_binds=` prefixes on their resolved path, and
//! later bound from those descriptors, so nothing can be swapped in between.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::SiteBind;
use crate::options::UserMount;

use super::sys;

/// Directories of the host every container gets (recursive binds).
pub const SYSTEM: &[&str] = &["/proc", "/sys", "/dev", "/tmp"];

/// Why a bind is there; decides how its source is opened and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    System,
    Site,
    Home,
    Cwd,
    BatchScript,
    User,
}

impl Origin {
    /// Whether the source comes from the user (opened with their rights).
    pub fn user_influenced(self) -> bool {
        !matches!(self, Origin::System | Origin::Site)
    }
}

/// One bind of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub origin: Origin,
}

/// The inputs of [`plan`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub site: &'a [SiteBind],
    pub home: Option<&'a Path>,
    pub cwd: &'a Path,
    pub batch_script: Option<&'a Path>,
    pub user: &'a [UserMount],
}

/// A bind berth refuses; the text reaches the user.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("--container-mounts: target {0} must be an absolute path other than /")]
    BadTarget(PathBuf),
    #[error("--container-mounts: target {0} contains `..`; give the target's plain absolute path")]
    DotDotTarget(PathBuf),
    #[error("--container-mounts: {target} is a system directory berth binds itself; choose another target")]
    SystemTarget { target: PathBuf },
    #[error("--container-mounts: source {0} does not exist; create it or fix the path")]
    Missing(PathBuf),
    #[error("--container-mounts: you cannot read {0}; bind only paths you can read")]
    NotReadable(PathBuf),
    #[error(
        "--container-mounts: {source_path} is outside the paths this site lets users bind ({allowed}); \
         bind from one of those or ask your administrator"
    )]
    NotAllowed {
        source_path: PathBuf,
        allowed: String,
    },
    #[error("cannot open {what} {path}: {error}")]
    Open {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

/// Whether `path` is visible inside the container at the same path through
/// one of `binds`.
fn visible(path: &Path, binds: &[Bind]) -> bool {
    binds
        .iter()
        .any(|b| b.source == b.target && path.starts_with(&b.source))
}

/// The binds of a step, parents before children.
pub fn plan(req: &Request<'_>) -> Result<Vec<Bind>, BindError> {
    let mut binds: Vec<Bind> = SYSTEM
        .iter()
        .map(|p| Bind {
            source: p.into(),
            target: p.into(),
            read_only: false,
            origin: Origin::System,
        })
        .collect();
    binds.extend(req.site.iter().map(|s| Bind {
        source: s.source.clone(),
        target: s.target.clone(),
        read_only: s.read_only,
        origin: Origin::Site,
    }));
    if let Some(home) = req.home.filter(|h| *h != Path::new("/")) {
        binds.push(Bind {
            source: home.into(),
            target: home.into(),
            read_only: false,
            origin: Origin::Home,
        });
    }
    for m in req.user {
        if !m.target.is_absolute() || m.target == Path::new("/") {
            return Err(BindError::BadTarget(m.target.clone()));
        }
        if m.target
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(BindError::DotDotTarget(m.target.clone()));
        }
        if SYSTEM
            .iter()
            .any(|s| m.target.starts_with(s) && *s != "/tmp")
        {
            return Err(BindError::SystemTarget {
                target: m.target.clone(),
            });
        }
        binds.push(Bind {
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
            origin: Origin::User,
        });
    }
    if req.cwd != Path::new("/") && !visible(req.cwd, &binds) {
        binds.push(Bind {
            source: req.cwd.into(),
            target: req.cwd.into(),
            read_only: false,
            origin: Origin::Cwd,
        });
    }
    if let Some(script) = req.batch_script {
        binds.push(Bind {
            source: script.into(),
            target: script.into(),
            read_only: true,
            origin: Origin::BatchScript,
        });
    }
    // Stable: among equal depths, the order above (system, site, home, user).
    binds.sort_by_key(|b| depth(&b.target));
    Ok(binds)
}

/// Where a bind that is not a system bind may not land (checked on the
/// target as resolved inside the container): the root, /proc, /sys, /dev.
pub fn forbidden_landing(landed: &Path) -> bool {
    landed == Path::new("/") || SYSTEM.iter().any(|s| *s != "/tmp" && landed.starts_with(s))
}

/// Whether `resolved` lies under one of the site's `user_binds=` prefixes.
pub fn allowed(resolved: &Path, prefixes: &[PathBuf]) -> bool {
    prefixes.iter().any(|p| resolved.starts_with(p))
}

/// Whether the mount point for `bind` lies inside an earlier bind (then it
/// must exist there; berth never creates anything in a host directory).
pub fn inside_earlier_bind(binds: &[Bind], index: usize) -> bool {
    let target = &binds[index].target;
    binds[..index]
        .iter()
        .any(|b| target.starts_with(&b.target) && *target != b.target)
}

/// A bind with its source opened (an `O_PATH` descriptor).
#[derive(Debug)]
pub struct OpenBind {
    pub bind: Bind,
    pub source: OwnedFd,
    pub is_dir: bool,
}

/// Opens every user-influenced source with the calling (user's) credentials:
/// it must exist, be readable by the user and, for `--container-mounts`, lie
/// under an allowed prefix once symlinks are resolved. System and site
/// sources are skipped here (opened as root when the view is built).
pub fn open_as_user(binds: &[Bind], prefixes: &[PathBuf]) -> Result<Opened, BindError> {
    let mut out = Opened::default();
    for bind in binds.iter().filter(|b| b.origin.user_influenced()) {
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&bind.source)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && bind.origin == Origin::Home => {
                log::debug!(
                    "home {} does not exist; not binding it",
                    bind.source.display()
                );
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && bind.origin == Origin::User => {
                return Err(BindError::Missing(bind.source.clone()))
            }
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied && bind.origin == Origin::User =>
            {
                return Err(BindError::NotReadable(bind.source.clone()))
            }
            Err(error) => {
                return Err(BindError::Open {
                    what: origin_name(bind.origin),
                    path: bind.source.clone(),
                    error,
                })
            }
        };
        let fd: OwnedFd = file.into();
        let open_err = |error| BindError::Open {
            what: origin_name(bind.origin),
            path: bind.source.clone(),
            error,
        };
        if bind.origin == Origin::User && !sys::can_read(fd.as_fd()).map_err(open_err)? {
            return Err(BindError::NotReadable(bind.source.clone()));
        }
        let resolved = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .map_err(open_err)?;
        if !allowed(&resolved, prefixes) {
            match bind.origin {
                Origin::Home | Origin::Cwd => {
                    out.notes.push(not_bound_note(bind, &resolved, prefixes));
                    continue;
                }
                Origin::User => {
                    return Err(BindError::NotAllowed {
                        source_path: bind.source.clone(),
                        allowed: allowed_text(prefixes),
                    })
                }
                // The batch script is Slurm's copy, in slurmd's spool.
                _ => {}
            }
        }
        let is_dir = File::from(fd.try_clone().map_err(open_err)?)
            .metadata()
            .map_err(open_err)?
            .is_dir();
        out.binds.push(OpenBind {
            bind: bind.clone(),
            source: fd,
            is_dir,
        });
    }
    Ok(out)
}

/// The user-influenced sources opened, and what was left out and why.
#[derive(Debug, Default)]
pub struct Opened {
    pub binds: Vec<OpenBind>,
    /// One line per home or working directory not bound (for srun's stderr).
    pub notes: Vec<String>,
}

/// Why a home or working directory outside `user_binds=` is not bound.
fn not_bound_note(bind: &Bind, resolved: &Path, prefixes: &[PathBuf]) -> String {
    let then = match bind.origin {
        Origin::Cwd => "the task starts where the image has that path, else in /tmp; use --container-workdir to choose",
        _ => "the image's directory of that name, if any, is what the task sees",
    };
    format!(
        "note: the {} {} ({}) is outside the paths this site lets users bind ({}); it is not bound into the container: {then}",
        origin_name(bind.origin),
        bind.source.display(),
        resolved.display(),
        allowed_text(prefixes)
    )
}

fn allowed_text(prefixes: &[PathBuf]) -> String {
    if prefixes.is_empty() {
        return "none".into();
    }
    prefixes
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::System => "system directory",
        Origin::Site => "site bind",
        Origin::Home => "home directory",
        Origin::Cwd => "working directory",
        Origin::BatchScript => "batch script",
        Origin::User => "--container-mounts source",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(s: &str, t: &str, ro: bool) -> UserMount {
        UserMount {
            source: s.into(),
            target: t.into(),
            read_only: ro,
        }
    }

    fn request<'a>(user: &'a [UserMount], site: &'a [SiteBind], cwd: &'a Path) -> Request<'a> {
        Request {
            site,
            home: Some(Path::new("/home/alice")),
            cwd,
            batch_script: None,
            user,
        }
    }

    fn targets(binds: &[Bind]) -> Vec<String> {
        binds
            .iter()
            .map(|b| b.target.display().to_string())
            .collect()
    }

    #[test]
    fn defaults_bind_system_dirs_and_home_and_skip_a_cwd_under_home() {
        let binds = plan(&request(&[], &[], Path::new("/home/alice/work"))).unwrap();
        assert_eq!(
            targets(&binds),
            ["/proc", "/sys", "/dev", "/tmp", "/home/alice"]
        );
        assert!(binds.iter().all(|b| !b.read_only));
    }

    #[test]
    fn a_cwd_outside_every_bind_is_bound() {
        let binds = plan(&request(&[], &[], Path::new("/scratch/alice/run"))).unwrap();
        let cwd = binds.iter().find(|b| b.origin == Origin::Cwd).unwrap();
        assert_eq!(cwd.target, PathBuf::from("/scratch/alice/run"));
        let binds = plan(&request(&[], &[], Path::new("/tmp/x"))).unwrap();
        assert!(binds.iter().all(|b| b.origin != Origin::Cwd));
    }

    #[test]
    fn user_and_site_binds_come_parents_first() {
        let site = [SiteBind {
            source: "/opt/sw".into(),
            target: "/sw".into(),
            read_only: true,
        }];
        let user = [
            mount("/data/a", "/home/alice/data", true),
            mount("/data", "/data", false),
        ];
        let binds = plan(&request(&user, &site, Path::new("/"))).unwrap();
        assert_eq!(
            targets(&binds),
            [
                "/proc",
                "/sys",
                "/dev",
                "/tmp",
                "/sw",
                "/data",
                "/home/alice",
                "/home/alice/data"
            ]
        );
        assert!(binds[4].read_only && binds[4].origin == Origin::Site);
        assert!(inside_earlier_bind(&binds, 7));
        assert!(!inside_earlier_bind(&binds, 6));
    }

    #[test]
    fn targets_over_system_dirs_or_root_are_refused() {
        for t in ["/proc/x", "/dev", "/"] {
            let user = [mount("/data", t, false)];
            assert!(plan(&request(&user, &[], Path::new("/"))).is_err(), "{t}");
        }
        let user = [mount("/data", "/tmp/data", false)];
        assert!(plan(&request(&user, &[], Path::new("/"))).is_ok());
    }

    #[test]
    fn the_batch_script_is_bound_read_only() {
        let mut req = request(&[], &[], Path::new("/home/alice"));
        req.batch_script = Some(Path::new("/var/spool/slurmd/job00042/slurm_script"));
        let binds = plan(&req).unwrap();
        let b = binds.last().unwrap();
        assert_eq!(b.origin, Origin::BatchScript);
        assert!(b.read_only);
    }

    #[test]
    fn prefixes_match_whole_components() {
        let prefixes = vec![PathBuf::from("/scratch"), PathBuf::from("/home")];
        assert!(allowed(Path::new("/scratch/a"), &prefixes));
        assert!(allowed(Path::new("/home"), &prefixes));
        assert!(!allowed(Path::new("/scratchy"), &prefixes));
        assert!(!allowed(Path::new("/etc"), &[]));
        assert!(allowed(Path::new("/etc"), &[PathBuf::from("/")]));
    }

    #[test]
    fn opening_checks_existence_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let bind = |s: &Path| Bind {
            source: s.into(),
            target: "/x".into(),
            read_only: false,
            origin: Origin::User,
        };
        let ok = open_as_user(&[bind(&src)], &[dir.path().into()]).unwrap();
        assert!(ok.binds[0].is_dir);
        let err =
            open_as_user(&[bind(&dir.path().join("nope"))], &[PathBuf::from("/")]).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = open_as_user(&[bind(&src)], &[PathBuf::from("/nowhere")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("outside the paths this site lets users bind (/nowhere)"),
            "{err}"
        );
        // A symlink into a forbidden place is judged by where it leads.
        let link = dir.path().join("allowed-link");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let err = open_as_user(&[bind(&link)], &[dir.path().into()]).unwrap_err();
        assert!(matches!(err, BindError::NotAllowed { .. }), "{err}");
    }

    #[test]
    fn a_cwd_or_home_outside_user_binds_is_left_out_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let binds = [
            Bind {
                source: "/etc".into(),
                target: "/etc".into(),
                read_only: false,
                origin: Origin::Cwd,
            },
            Bind {
                source: dir.path().into(),
                target: "/home/u".into(),
                read_only: false,
                origin: Origin::Home,
            },
        ];
        let opened = open_as_user(&binds, &[PathBuf::from("/home")]).unwrap();
        assert!(opened.binds.is_empty());
        assert_eq!(opened.notes.len(), 2);
        assert!(
            opened.notes[0].starts_with("note: the working directory /etc (/etc) is outside the paths this site lets users bind (/home); it is not bound"),
            "{:?}",
            opened.notes
        );
        let opened = open_as_user(&binds, &[PathBuf::from("/")]).unwrap();
        assert_eq!(opened.binds.len(), 2);
        assert!(opened.notes.is_empty());
    }
}
