//! The step's view of the image: built once per step in a mount namespace of
//! its own, entered by each task.
//!
//! [`build`] runs in a short-lived thread of slurmstepd (unshare affects only
//! the calling thread, so slurmstepd itself never changes namespace):
//!
//! 1. detached copies of every bind source (open_tree, which copies only
//!    mounts of the caller's namespace: so first); user sources come from
//!    descriptors the user opened;
//! 2. a new mount namespace, everything in it a slave of the host (host
//!    mounts made later under a bound path appear inside; nothing made here
//!    reaches the host, even when the host's mounts are shared);
//! 3. an overlay: the shared read-only squashfs below, a tmpfs above, so mount
//!    points can be created anywhere (and `--container-writable` costs
//!    nothing more);
//! 4. `pivot_root` into the overlay and detach the old root: nothing of the
//!    host is reachable any more but the copies taken in 1;
//! 5. read the image's passwd, group and env scripts, write the merged passwd
//!    and group, create the mount points (all of this before anything of the
//!    host is attached, so an image symlink cannot lead a root write out);
//! 6. make the root read-only (unless writable), attach the binds: each
//!    target is resolved inside the container's root (openat2
//!    RESOLVE_IN_ROOT), checked on where it landed (never /, /proc, /sys,
//!    /dev for a user-influenced bind) and attached to that descriptor.
//!
//! Every bind is nosuid and nodev (/dev keeps its devices, but is nosuid),
//! every copied tree a slave, set on the detached tree before it is attached.
//!
//! Tasks then [`enter`] it: setns into the step's namespace, and unshare again
//! so each task has a namespace of its own, with no_new_privs set.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::binds::{self, Bind, OpenBind, Origin};
use super::env::Script;
use super::identity::{self, Identity};
use super::sys;

/// What the view is built from.
pub struct Spec<'a> {
    /// The image's squashfs, mounted (shared) in the host's namespace.
    pub image_root: &'a Path,
    /// An empty directory to stage the overlay on (in the private namespace).
    pub stage: &'a Path,
    pub writable: bool,
    /// The size of the tmpfs holding the overlay's writable layer, MiB.
    pub tmpfs_mib: u64,
    /// All binds, parents first (see [`binds::plan`]).
    pub binds: &'a [Bind],
    /// The user-influenced sources, opened with the user's rights.
    pub opened: &'a [OpenBind],
    /// The user whose passwd and group entries go into the image.
    pub identity: Option<&'a Identity>,
    /// The most berth reads of the image's env scripts (one byte past it tells
    /// the caller they are too big).
    pub env_script_max_bytes: usize,
}

/// A built view: its namespace and what was read from the image.
#[derive(Debug)]
pub struct View {
    pub ns: OwnedFd,
    pub scripts: Vec<Script>,
    /// Microseconds per step, in order.
    pub timings: Vec<(&'static str, u128)>,
}

/// A failure to build the view; the text reaches the user.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("cannot {what}: {error}")]
    Setup { what: String, error: io::Error },
    #[error("cannot bind {source_path} at {target} in the container ({step}): {error}")]
    Bind {
        step: &'static str,
        source_path: PathBuf,
        target: PathBuf,
        error: io::Error,
    },
    #[error(
        "bind target {target} lands on {landed} in the container, which is the root or \
         under /proc, /sys or /dev; choose another target"
    )]
    ForbiddenTarget { target: PathBuf, landed: PathBuf },
    #[error("internal error: the thread building the container view panicked")]
    Panicked,
}

fn setup(what: impl Into<String>) -> impl FnOnce(io::Error) -> ViewError {
    let what = what.into();
    move |error| ViewError::Setup { what, error }
}

/// Builds the view (see the module docs) and returns its namespace.
pub fn build(spec: &Spec<'_>) -> Result<View, ViewError> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("berth-view".into())
            .spawn_scoped(s, || build_in_this_thread(spec))
            .map_err(setup("start the thread that builds the container view"))?
            .join()
            .unwrap_or(Err(ViewError::Panicked))
    })
}

/// Moves the calling task into the step's view, in a namespace of its own,
/// and sets no_new_privs (nothing the task execs gains privileges).
pub fn enter(ns: BorrowedFd<'_>) -> io::Result<()> {
    sys::set_no_new_privs()?;
    sys::enter_mount_ns(ns)?;
    sys::unshare_mount_ns()
}

/// A bind's source tree, detached, with its attributes set.
struct Tree {
    bind: Bind,
    tree: OwnedFd,
    is_dir: bool,
}

fn build_in_this_thread(spec: &Spec<'_>) -> Result<View, ViewError> {
    let mut t = Timings::start();
    // open_tree copies only mounts of the caller's namespace: take the copies
    // while this thread is still in the host's.
    let trees = detach_sources(spec)?;
    t.done("copy-binds");
    sys::unshare_mount_ns().map_err(setup("create a mount namespace"))?;
    let ns: OwnedFd = File::open("/proc/thread-self/ns/mnt")
        .map_err(setup("open the new mount namespace"))?
        .into();
    sys::make_mounts_slave().map_err(setup("make the namespace's mounts slaves"))?;
    t.done("unshare");
    let root = stage_overlay(spec)?;
    t.done("overlay");
    pivot_into(&root, &ns)?;
    t.done("pivot");
    let scripts = read_env_scripts(spec.env_script_max_bytes.saturating_add(1));
    if let Some(identity) = spec.identity {
        write_identity(identity)?;
    }
    make_mount_points(&trees)?;
    t.done("files");
    if !spec.writable {
        let flags =
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        sys::mount(None, Path::new("/"), None, flags, None)
            .map_err(setup("make the container's root read-only"))?;
    }
    attach_binds(&trees)?;
    t.done("attach");
    Ok(View {
        ns,
        scripts,
        timings: t.done,
    })
}

/// Microseconds per step of [`build`] (for berth's debug log).
struct Timings {
    last: std::time::Instant,
    done: Vec<(&'static str, u128)>,
}

impl Timings {
    fn start() -> Timings {
        Timings {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn done(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, (now - self.last).as_micros()));
        self.last = now;
    }
}

/// tmpfs on the stage, overlay of the image and the tmpfs at stage/root.
fn stage_overlay(spec: &Spec<'_>) -> Result<PathBuf, ViewError> {
    let stage = spec.stage;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    let tmpfs = CString::new(format!("mode=0755,size={}m", spec.tmpfs_mib.max(1)))
        .map_err(|_| setup("build the tmpfs options")(io::ErrorKind::InvalidInput.into()))?;
    sys::mount(
        Some(Path::new("berth")),
        stage,
        Some(c"tmpfs"),
        flags,
        Some(&tmpfs),
    )
    .map_err(setup(format!("mount a tmpfs on {}", stage.display())))?;
    let (upper, work, root) = (stage.join("upper"), stage.join("work"), stage.join("root"));
    for d in [&upper, &work, &root] {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(d)
            .map_err(setup(format!("create {}", d.display())))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        spec.image_root.display(),
        upper.display(),
        work.display()
    );
    let data = CString::new(data).map_err(|_| {
        setup("build the overlay options")(io::Error::from(io::ErrorKind::InvalidInput))
    })?;
    sys::mount(
        Some(Path::new("berth")),
        &root,
        Some(c"overlay"),
        flags,
        Some(&data),
    )
    .map_err(setup("mount the image's overlay"))?;
    Ok(root)
}

fn detach_sources(spec: &Spec<'_>) -> Result<Vec<Tree>, ViewError> {
    let mut trees = Vec::new();
    for bind in spec.binds {
        let (source, is_dir): (OwnedFd, bool) = if bind.origin.user_influenced() {
            match spec.opened.iter().find(|o| o.bind == *bind) {
                Some(o) => (
                    o.source
                        .try_clone()
                        .map_err(setup("duplicate a bind source"))?,
                    o.is_dir,
                ),
                // Not opened (a home that does not exist): nothing to bind.
                None => continue,
            }
        } else {
            match File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(&bind.source)
            {
                Ok(f) => {
                    let is_dir = f.metadata().map(|m| m.is_dir()).unwrap_or(true);
                    (f.into(), is_dir)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && bind.origin == Origin::Site => {
                    log::warn!(
                        "site bind {} does not exist on this node; skipped",
                        bind.source.display()
                    );
                    continue;
                }
                Err(error) => {
                    return Err(ViewError::Bind {
                        step: "open the source",
                        source_path: bind.source.clone(),
                        target: bind.target.clone(),
                        error,
                    })
                }
            }
        };
        let bind_err = |error| ViewError::Bind {
            step: "copy the source",
            source_path: bind.source.clone(),
            target: bind.target.clone(),
            error,
        };
        let tree = sys::clone_tree(source.as_fd()).map_err(bind_err)?;
        sys::set_tree_attrs(tree.as_fd(), tree_attrs(bind)).map_err(|error| ViewError::Bind {
            step: "set nosuid, nodev, read-only and slave propagation",
            source_path: bind.source.clone(),
            target: bind.target.clone(),
            error,
        })?;
        trees.push(Tree {
            bind: bind.clone(),
            tree,
            is_dir,
        });
    }
    Ok(trees)
}

/// The attributes of a bind's tree: always nosuid; nodev but for the
/// system /dev (whose devices the tasks need); read-only when asked.
fn tree_attrs(bind: &Bind) -> u64 {
    let mut attrs = sys::MOUNT_ATTR_NOSUID;
    if !(bind.origin == Origin::System && bind.target == Path::new("/dev")) {
        attrs |= sys::MOUNT_ATTR_NODEV;
    }
    if bind.read_only {
        attrs |= sys::MOUNT_ATTR_RDONLY;
    }
    attrs
}

/// Attaches every tree, parents first, each on its target resolved inside
/// the container's root (the calling thread's, after the pivot).
fn attach_binds(trees: &[Tree]) -> Result<(), ViewError> {
    let root: OwnedFd = File::open("/")
        .map_err(setup("open the container's root"))?
        .into();
    for t in trees {
        let err = |step| {
            move |error| ViewError::Bind {
                step,
                source_path: t.bind.source.clone(),
                target: t.bind.target.clone(),
                error,
            }
        };
        let target = match sys::open_path_in_root(root.as_fd(), &t.bind.target) {
            Ok(fd) => fd,
            Err(e) => {
                // A missing target under a forbidden place: say where it is.
                if let Some(parent) = t.bind.target.parent() {
                    if let Ok(p) = sys::open_path_in_root(root.as_fd(), parent) {
                        if t.bind.origin != Origin::System {
                            check_landing(&t.bind.target, p.as_fd())?;
                        }
                    }
                }
                return Err(err("resolve the target in the container")(e));
            }
        };
        if t.bind.origin != Origin::System {
            check_landing(&t.bind.target, target.as_fd())?;
        }
        sys::move_mount_to_fd(t.tree.as_fd(), target.as_fd()).map_err(err("attach"))?;
    }
    Ok(())
}

/// Refuses a target that resolved to the root or into /proc, /sys, /dev.
fn check_landing(target: &Path, fd: BorrowedFd<'_>) -> Result<(), ViewError> {
    use std::os::fd::AsRawFd;
    let landed = fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
        .map_err(setup(format!("find where {} lands", target.display())))?;
    if binds::forbidden_landing(&landed) {
        return Err(ViewError::ForbiddenTarget {
            target: target.into(),
            landed,
        });
    }
    Ok(())
}

/// Makes `root` the root of the namespace `ns` (the calling thread's).
///
/// slurmstepd may itself run chrooted (Slurm in a chroot, as the 24.11 test
/// cluster does): a pivot from there would replace only the chroot, and a task
/// joining the namespace would land at the namespace's real root, the host's.
/// So the thread first re-enters its own namespace, which puts its root at
/// the namespace's root, and pivots from there.
fn pivot_into(root: &Path, ns: &OwnedFd) -> Result<(), ViewError> {
    let view = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)
        .map_err(setup("open the container's root"))?;
    sys::enter_mount_ns(ns.as_fd()).map_err(setup("go to the namespace's root"))?;
    sys::fchdir(view.as_fd()).map_err(setup("enter the container's root"))?;
    sys::pivot_root_here().map_err(setup("pivot_root into the container"))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH).map_err(setup("detach the host's root"))?;
    std::env::set_current_dir("/").map_err(setup("change to the container's /"))
}

/// The most berth reads of the image's /etc/passwd and /etc/group.
const IDENTITY_FILE_MAX: usize = 1 << 20;

/// Reads at most `limit` bytes of a file of the image (symlinks resolved inside
/// the image).
fn read_image_file(path: &str, limit: usize) -> Option<String> {
    let root = File::open("/").ok()?;
    let fd = sys::open_in_root(root.as_fd(), Path::new(path)).ok()?;
    let mut bytes = Vec::new();
    File::from(fd)
        .take(limit as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The image's env scripts, at most `budget` bytes of them all together.
fn read_env_scripts(budget: usize) -> Vec<Script> {
    let Ok(dir) = fs::read_dir("/.singularity.d/env") else {
        return Vec::new();
    };
    let mut left = budget;
    let mut scripts = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sh") || left == 0 {
            continue;
        }
        if let Some(text) = read_image_file(&format!("/.singularity.d/env/{name}"), left) {
            // Lossy decoding only grows the text: a cut script still counts as too big.
            left = left.saturating_sub(text.len());
            scripts.push(Script { name, text });
        }
    }
    scripts
}

/// Writes a file of the view as root: never through a symlink.
fn write_view_file(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        fs::remove_file(path)?;
    }
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn write_identity(identity: &Identity) -> Result<(), ViewError> {
    let passwd = identity::merged_passwd(
        &read_image_file("/etc/passwd", IDENTITY_FILE_MAX).unwrap_or_default(),
        &identity.user,
    );
    let group = identity::merged_group(
        &read_image_file("/etc/group", IDENTITY_FILE_MAX).unwrap_or_default(),
        identity,
    );
    write_view_file(Path::new("/etc/passwd"), &passwd)
        .map_err(setup("write /etc/passwd in the container"))?;
    write_view_file(Path::new("/etc/group"), &group)
        .map_err(setup("write /etc/group in the container"))
}

/// Creates each bind's mount point in the overlay, except those inside an
/// earlier bind (those must exist there: berth never writes to the host).
fn make_mount_points(trees: &[Tree]) -> Result<(), ViewError> {
    let binds: Vec<Bind> = trees.iter().map(|t| t.bind.clone()).collect();
    for (i, t) in trees.iter().enumerate() {
        if binds::inside_earlier_bind(&binds, i) {
            continue;
        }
        let target = &t.bind.target;
        let err = |error| ViewError::Bind {
            step: "create the mount point",
            source_path: t.bind.source.clone(),
            target: target.clone(),
            error,
        };
        if t.is_dir {
            fs::create_dir_all(target).map_err(err)?;
        } else {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(err)?;
            }
            if fs::symlink_metadata(target).is_err() {
                File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(target)
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}
