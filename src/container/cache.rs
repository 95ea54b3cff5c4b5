//! One squashfs mount per image per node, shared by the tasks of a step and
//! reused by later steps and jobs that run the same image.
//!
//! Layout under `run_dir`:
//! ```text
//! images.lock                       flock(2) held while the cache changes
//! images/<key>/root                 the image's squashfs, mounted read-only
//! images/<key>/holders/<pid>-<start>  one file per slurmstepd using it
//! images/<key>/verified             the signature check passed (policy tag)
//! ```
//! `<key>` is the image file's identity (st_dev, st_ino, mtime, ctime, size) and the
//! partition's place in it, so a replaced or rewritten image gets a new mount.
//! A holder names a slurmstepd by pid and start time: one that crashed is
//! recognised as dead and dropped. The mtime of `holders/` is the last time a
//! step came or went; a mount with no live holder for `mount_idle_seconds` is
//! unmounted (its loop device clears itself) by the next step that looks.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::env::Script;
use super::sys;
use crate::reconcile::process;
use crate::run_dir::{fd_path, Dir, Lock, RunDirError};

/// An image entry's record of a passed signature check (the policy tag).
const VERIFIED: &str = "verified";
const VERIFIED_LIMIT: u64 = 256;

/// Where a filesystem lies inside the image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub size: u64,
}

/// The identity of an image file and the extent mounted from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    /// ctime cannot be set by the file's owner: an image rewritten in place
    /// with its old mtime restored (`touch -d`) still gets a new key.
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
    pub size: u64,
    pub extent: Extent,
}

impl Key {
    pub fn of(meta: &fs::Metadata, extent: Extent) -> Key {
        Key {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime_sec: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            size: meta.size(),
            extent,
        }
    }

    /// The key's directory name: every field, so no two images share one.
    pub fn dir_name(&self) -> String {
        format!(
            "{:x}-{:x}-{}.{:09}-{}.{:09}-{}-{}+{}",
            self.dev,
            self.ino,
            self.mtime_sec,
            self.mtime_nsec,
            self.ctime_sec,
            self.ctime_nsec,
            self.size,
            self.extent.offset,
            self.extent.size
        )
    }
}

/// A process that uses a mount: pid and start time (clock ticks after boot,
/// field 22 of /proc/PID/stat), so a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub start: u64,
}

impl Holder {
    pub fn current() -> io::Result<Holder> {
        let pid = std::process::id();
        let start = process::start_time(pid as i32)
            .ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
        Ok(Holder { pid, start })
    }

    pub fn file_name(&self) -> String {
        format!("{}-{}", self.pid, self.start)
    }

    pub fn parse(name: &str) -> Option<Holder> {
        let (pid, start) = name.split_once('-')?;
        Some(Holder {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    /// Whether the process still runs (a zombie, e.g. a killed slurmstepd
    /// nobody has waited for yet, does not).
    pub fn alive(&self) -> bool {
        i32::try_from(self.pid).is_ok_and(|pid| process::is_alive(pid, self.start))
    }
}

/// A failure to mount an image; the text reaches the user.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "the kernel refused to mount the image's squashfs ({}); the image is damaged or \
         compressed with a method this node's kernel lacks: rebuild it (gzip is always supported)",
        super::errno_text(.0)
    )]
    Refused(io::Error),
    #[error(
        "no loop device for the image ({}); ask your administrator (loop devices exhausted?)",
        super::errno_text(.0)
    )]
    Loop(io::Error),
    #[error("berth's image cache {path}: {error}")]
    Cache { path: PathBuf, error: io::Error },
    #[error("berth's image cache: {0}")]
    RunDir(#[from] RunDirError),
    #[error(
        "this node already has {count} mounted images, the limit set by `{key}={limit}` in \
         plugstack.conf; run fewer distinct images at once (or rebuild less often), or ask your \
         administrator to raise {key}"
    )]
    TooManyImages {
        count: u64,
        limit: u64,
        key: &'static str,
    },
}

/// How many images may be mounted, node-wide and per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_images: u64,
    pub max_images_per_user: u64,
    /// The step's user (its images count towards `max_images_per_user`).
    pub uid: Option<u32>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_images: 256,
            max_images_per_user: 16,
            uid: None,
        }
    }
}

fn cache_err(path: &Path) -> impl FnOnce(io::Error) -> MountError + '_ {
    move |error| MountError::Cache {
        path: path.to_path_buf(),
        error,
    }
}

/// A directory name berth writes under images/ or views/.
fn is_cache_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b"-+.".contains(&b))
}

/// The image cache of one node.
#[derive(Debug, Clone)]
pub struct Cache {
    run_dir: PathBuf,
    limits: Limits,
}

/// A step's use of a cached mount, given back with [`Cache::release`].
#[derive(Debug)]
pub struct Lease {
    /// The mounted image root (read-only squashfs).
    pub root: PathBuf,
    /// Whether this step mounted it (first use) or found it mounted.
    pub mounted_now: bool,
    entry: String,
    holder: String,
}

/// What [`Cache::reap`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub unmounted: Vec<PathBuf>,
    pub dead_holders: usize,
    /// Kept step views let go.
    pub views: usize,
}

impl Cache {
    pub fn new(run_dir: &Path) -> Cache {
        Cache {
            run_dir: run_dir.to_path_buf(),
            limits: Limits::default(),
        }
    }

    /// The same cache with caps on mounted images.
    pub fn limited(self, limits: Limits) -> Cache {
        Cache { limits, ..self }
    }

    /// Refuses a new image entry when a cap is reached, after unmounting
    /// every idle image (under the node-wide lock).
    fn check_room(&self, images: &Dir, name: &str) -> Result<(), MountError> {
        if images.names(|n| n == name)?.len() == 1 {
            return Ok(());
        }
        if self.over_a_limit(images)?.is_some() {
            self.reap_locked(Duration::ZERO, SystemTime::now())?;
        }
        match self.over_a_limit(images)? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn over_a_limit(&self, images: &Dir) -> Result<Option<MountError>, MountError> {
        let names = images.names(is_cache_name)?;
        let count = names.len() as u64;
        if count >= self.limits.max_images {
            return Ok(Some(MountError::TooManyImages {
                count,
                limit: self.limits.max_images,
                key: "max_images",
            }));
        }
        let Some(uid) = self.limits.uid else {
            return Ok(None);
        };
        let mine = names
            .iter()
            .filter(|n| owner_of(images, n) == Some(uid))
            .count() as u64;
        if mine >= self.limits.max_images_per_user {
            return Ok(Some(MountError::TooManyImages {
                count: mine,
                limit: self.limits.max_images_per_user,
                key: "max_images_per_user",
            }));
        }
        Ok(None)
    }

    fn run_dir(&self) -> Result<Dir, MountError> {
        Ok(Dir::open(&self.run_dir)?)
    }

    fn images(&self) -> Result<Dir, MountError> {
        Ok(self.run_dir()?.subdir("images")?)
    }

    fn views(&self) -> Result<Dir, MountError> {
        Ok(self.run_dir()?.subdir("views")?)
    }

    /// Takes the node-wide cache lock, for bookkeeping only (released when
    /// the file is closed, also when the process dies).
    fn lock(&self) -> Result<Lock, MountError> {
        Ok(self.run_dir()?.lock("images.lock")?)
    }

    /// The image's mount for `holder`: mounted now from `image` (the user's
    /// descriptor) unless a live mount of the same key exists. Mounts idle for
    /// `idle` (e.g. left by a crashed slurmstepd) are unmounted first. The
    /// node-wide lock covers the bookkeeping; the kernel mount happens under
    /// the image's own lock, so a hung filesystem stalls only its own steps.
    pub fn acquire(
        &self,
        image: &File,
        key: &Key,
        holder: Holder,
        idle: Duration,
    ) -> Result<Lease, MountError> {
        let name = key.dir_name();
        let entry = {
            let _lock = self.lock()?;
            self.reap_locked(idle, SystemTime::now())?;
            let images = self.images()?;
            self.check_room(&images, &name)?;
            let entry = images.subdir(&name)?;
            if let Some(uid) = self.limits.uid {
                if entry.read_file("owner", 16).ok().flatten().is_none() {
                    entry.write_atomically("owner", uid.to_string().as_bytes())?;
                }
            }
            entry.subdir("holders")?.create_file(&holder.file_name())?;
            entry
        };
        let lease = Lease {
            root: entry.path().join("root"),
            mounted_now: false,
            entry: name,
            holder: holder.file_name(),
        };
        match mount_entry(&entry, image, key.extent) {
            Ok(mounted_now) => Ok(Lease {
                mounted_now,
                ..lease
            }),
            Err(e) => {
                let _ = self.release(lease, idle);
                Err(e)
            }
        }
    }

    /// The tag that [`Cache::record_verified`] left for the image `key`, if any
    /// (`images/<key>/verified`; see `signature_policy`).
    pub fn verified_tag(&self, key: &Key) -> Result<Option<String>, MountError> {
        let _lock = self.lock()?;
        let images = self.images()?;
        let name = key.dir_name();
        if !images.names(|n| n == name)?.contains(&name) {
            return Ok(None);
        }
        let tag = images
            .subdir(&name)?
            .read_file(VERIFIED, VERIFIED_LIMIT)
            .ok()
            .flatten();
        Ok(tag.map(|t| String::from_utf8_lossy(&t).into_owned()))
    }

    /// Records that the image `key` passed the signature check under `tag`; the
    /// entry keeps it as long as it is cached.
    pub fn record_verified(&self, key: &Key, tag: &str) -> Result<(), MountError> {
        let _lock = self.lock()?;
        let entry = self.images()?.subdir(&key.dir_name())?;
        entry.write_atomically(VERIFIED, tag.as_bytes())?;
        Ok(())
    }

    /// Gives a lease back, then unmounts what has been idle for `idle`.
    pub fn release(&self, lease: Lease, idle: Duration) -> Result<Reaped, MountError> {
        let _lock = self.lock()?;
        let holders = self.images()?.subdir(&lease.entry)?.subdir("holders")?;
        holders.remove_file(&lease.holder)?;
        self.reap_locked(idle, SystemTime::now())
    }

    /// Unmounts every image without a live holder for at least `idle`.
    pub fn reap(&self, idle: Duration) -> Result<Reaped, MountError> {
        let _lock = self.lock()?;
        self.reap_locked(idle, SystemTime::now())
    }

    /// What [`Cache::reap`] would do, changing nothing (`berth gc --dry-run`).
    pub fn plan_reap(&self, idle: Duration) -> Result<Reaped, MountError> {
        let _lock = self.lock()?;
        self.reap_with(idle, SystemTime::now(), true)
    }

    fn reap_locked(&self, idle: Duration, now: SystemTime) -> Result<Reaped, MountError> {
        self.reap_with(idle, now, false)
    }

    fn reap_with(&self, idle: Duration, now: SystemTime, dry: bool) -> Result<Reaped, MountError> {
        let mut reaped = Reaped::default();
        // Views first: an idle view still holds its image's squashfs.
        let views = self.views()?;
        for name in views.names(is_cache_name)? {
            let Ok(dir) = views.subdir(&name) else {
                continue;
            };
            if !idle_for(&dir, idle, now, &mut reaped, dry) {
                continue;
            }
            if dry {
                reaped.views += usize::from(dir.is_mount_of("ns", sys::NSFS_MAGIC));
                continue;
            }
            if dir.is_mount_of("ns", sys::NSFS_MAGIC) {
                unmount_entry(&dir, "ns")?;
                reaped.views += 1;
            }
            for f in ["ns", "key", "scripts"] {
                let _ = dir.remove_file(f);
            }
            let _ = dir.remove_dir("holders");
            let _ = views.remove_dir(&name);
        }
        let images = self.images()?;
        for name in images.names(is_cache_name)? {
            let Ok(dir) = images.subdir(&name) else {
                continue;
            };
            // No step can reuse a mount whose image file was deleted.
            let idle = if backing_file_deleted(&dir) {
                Duration::ZERO
            } else {
                idle
            };
            if !idle_for(&dir, idle, now, &mut reaped, dry) {
                continue;
            }
            if dry {
                if dir.is_mount_of("root", sys::SQUASHFS_MAGIC) {
                    reaped.unmounted.push(dir.path().join("root"));
                }
                continue;
            }
            // The image's own lock: a step mounting it right now finishes first.
            let _image_lock = dir.lock("lock")?;
            if dir.is_mount_of("root", sys::SQUASHFS_MAGIC) {
                unmount_entry(&dir, "root")?;
                reaped.unmounted.push(dir.path().join("root"));
            }
            let _ = dir.remove_dir("holders");
            let _ = dir.remove_dir("root");
            let _ = dir.remove_file("lock");
            let _ = dir.remove_file("owner");
            let _ = dir.remove_file(VERIFIED);
            let _ = images.remove_dir(&name);
        }
        Ok(reaped)
    }

    /// A step view built earlier for exactly `key` (see [`view_key`]), still
    /// mounted: its namespace, entered by this step's tasks as is.
    pub fn find_view(&self, key: &str, holder: Holder) -> Result<Option<CachedView>, MountError> {
        let _lock = self.lock()?;
        let views = self.views()?;
        let name = key_hash(key);
        let Ok(dir) = views.subdir(&name) else {
            return Ok(None);
        };
        let same_key = dir
            .read_file("key", key.len() as u64)
            .ok()
            .flatten()
            .is_some_and(|k| k == key.as_bytes());
        if !same_key || !dir.is_mount_of("ns", sys::NSFS_MAGIC) {
            return Ok(None);
        }
        let ns: OwnedFd = dir.open_read("ns")?.into();
        let scripts = dir
            .read_file("scripts", SCRIPTS_LIMIT)
            .ok()
            .flatten()
            .unwrap_or_default();
        let scripts = decode_scripts(&scripts);
        dir.subdir("holders")?.create_file(&holder.file_name())?;
        Ok(Some(CachedView {
            ns,
            scripts,
            lease: ViewLease {
                entry: name,
                holder: holder.file_name(),
            },
        }))
    }

    /// Keeps a step's view for later steps with the same `key`: its namespace
    /// is bound on `views/<hash>/ns` (as `ip netns` keeps network namespaces).
    pub fn store_view(
        &self,
        key: &str,
        ns: BorrowedFd<'_>,
        scripts: &[Script],
        holder: Holder,
    ) -> Result<ViewLease, MountError> {
        let _lock = self.lock()?;
        let name = key_hash(key);
        let dir = self.views()?.subdir(&name)?;
        let holders = dir.subdir("holders")?;
        if dir.is_mount_of("ns", sys::NSFS_MAGIC) {
            // Another step stored one meanwhile (or a stale one with another key).
            unmount_entry(&dir, "ns")?;
        }
        dir.write_atomically("key", key.as_bytes())?;
        dir.write_atomically("scripts", &encode_scripts(scripts))?;
        drop(dir.open_or_create_file("ns")?);
        let target = dir.open_path("ns")?;
        let ns_path = dir.path().join("ns");
        sys::mount(
            Some(&fd_path(ns)),
            &fd_path(target.as_fd()),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(cache_err(&ns_path))?;
        holders.create_file(&holder.file_name())?;
        Ok(ViewLease {
            entry: name,
            holder: holder.file_name(),
        })
    }

    /// Gives a view back (its namespace stays for later steps until idle).
    pub fn release_view(&self, lease: ViewLease) -> Result<(), MountError> {
        let _lock = self.lock()?;
        let holders = self.views()?.subdir(&lease.entry)?.subdir("holders")?;
        Ok(holders.remove_file(&lease.holder)?)
    }
}

/// The uid recorded as the first user of the image entry `name`.
fn owner_of(images: &Dir, name: &str) -> Option<u32> {
    let dir = images.subdir(name).ok()?;
    let text = dir.read_file("owner", 16).ok()??;
    std::str::from_utf8(&text).ok()?.trim().parse().ok()
}

/// Kept env scripts larger than this are not read back.
const SCRIPTS_LIMIT: u64 = 16 << 20;

/// Under the image's own lock: mounts the image on `root` (created 0700 by
/// berth, reached by descriptor) unless it is mounted already.
fn mount_entry(entry: &Dir, image: &File, extent: Extent) -> Result<bool, MountError> {
    let _image_lock = entry.lock("lock")?;
    if entry.is_mount_of("root", sys::SQUASHFS_MAGIC) {
        return Ok(false);
    }
    let target = entry.make_mount_point("root")?;
    mount_image(image, extent, &fd_path(target.as_fd()))?;
    Ok(true)
}

/// Detaches the mount on `name`, reached through its descriptor.
fn unmount_entry(dir: &Dir, name: &str) -> Result<(), MountError> {
    let fd = dir.open_path(name)?;
    sys::umount2(&fd_path(fd.as_fd()), libc::MNT_DETACH).map_err(cache_err(&dir.path().join(name)))
}

/// A step's use of a kept view (see [`Cache::find_view`]).
#[derive(Debug)]
pub struct ViewLease {
    entry: String,
    holder: String,
}

/// A kept view, found for a new step.
#[derive(Debug)]
pub struct CachedView {
    pub ns: OwnedFd,
    pub scripts: Vec<Script>,
    pub lease: ViewLease,
}

/// The directory name of a view key (the key itself is stored and compared
/// in full, so a hash collision cannot hand one step another's view).
pub fn key_hash(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn encode_scripts(scripts: &[Script]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in scripts {
        out.extend_from_slice(s.name.as_bytes());
        out.push(0);
        out.extend_from_slice(s.text.replace('\0', "").as_bytes());
        out.push(0);
    }
    out
}

fn decode_scripts(bytes: &[u8]) -> Vec<Script> {
    let parts: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| Script {
            name: String::from_utf8_lossy(c[0]).into_owned(),
            text: String::from_utf8_lossy(c[1]).into_owned(),
        })
        .collect()
}

/// Drops the dead holders of a cache entry; whether it has had no live one
/// for `idle`.
/// With `dry`, dead holders are counted but left in place.
fn idle_for(dir: &Dir, idle: Duration, now: SystemTime, reaped: &mut Reaped, dry: bool) -> bool {
    let Ok(holders) = dir.subdir("holders") else {
        return false;
    };
    let mut live = 0;
    for name in holders.names(|_| true).unwrap_or_default() {
        match Holder::parse(&name) {
            Some(holder) if holder.alive() => live += 1,
            _ => {
                if !dry {
                    let _ = holders.remove_file(&name);
                }
                reaped.dead_holders += 1;
            }
        }
    }
    if live > 0 {
        return false;
    }
    let last_used = dir.mtime_of("holders").unwrap_or(SystemTime::UNIX_EPOCH);
    now.duration_since(last_used).unwrap_or_default() >= idle
}

/// Whether the image mounted on the entry's `root` was deleted: the kernel
/// marks its loop device's backing file (sysfs, not user-influenced).
fn backing_file_deleted(dir: &Dir) -> bool {
    if !dir.is_mount_of("root", sys::SQUASHFS_MAGIC) {
        return false;
    }
    let Ok(fd) = dir.open_path("root") else {
        return false;
    };
    let Ok(meta) = fs::metadata(fd_path(fd.as_fd())) else {
        return false;
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let path = format!("/sys/dev/block/{major}:{minor}/loop/backing_file");
    fs::read_to_string(path).is_ok_and(|f| f.trim_end().ends_with(" (deleted)"))
}

/// Whether `root` is a squashfs mounted over its directory (for tests and
/// `berth doctor`; root-side code uses [`Dir::is_mount_of`]).
pub fn is_mounted(root: &Path) -> bool {
    let (Ok(here), Some(Ok(parent))) = (fs::metadata(root), root.parent().map(fs::metadata)) else {
        return false;
    };
    here.dev() != parent.dev() && sys::fs_type(root).is_ok_and(|t| t == sys::SQUASHFS_MAGIC)
}

/// Loop device over `extent` of `image` (LOOP_CONFIGURE, read-only,
/// autoclear), squashfs mounted read-only, nosuid, nodev at `target`.
pub fn mount_image(image: &File, extent: Extent, target: &Path) -> Result<(), MountError> {
    let control = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .map_err(MountError::Loop)?;
    let mut last = None;
    for _ in 0..32 {
        let n = sys::loop_get_free(control.as_fd()).map_err(MountError::Loop)?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(d) => d,
            // Another process took it, or its node is not there yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(MountError::Loop(e)),
        };
        match sys::loop_configure(dev.as_fd(), image.as_fd(), extent.offset, extent.size) {
            Ok(()) => {
                let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
                // The loop device clears itself when `dev` is closed, unless
                // the mount holds it.
                return sys::mount(Some(&path), target, Some(c"squashfs"), flags, None)
                    .map_err(MountError::Refused);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(MountError::Loop(e)),
        }
    }
    Err(MountError::Loop(
        last.unwrap_or_else(|| io::Error::other("no free loop device")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_every_field() {
        let key = Key {
            dev: 0x803,
            ino: 0x1234,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 5,
            ctime_sec: 1_700_000_001,
            ctime_nsec: 7,
            size: 4096,
            extent: Extent {
                offset: 32768,
                size: 1024,
            },
        };
        assert_eq!(
            key.dir_name(),
            "803-1234-1700000000.000000005-1700000001.000000007-4096-32768+1024"
        );
        let other = Key {
            mtime_nsec: 6,
            ..key.clone()
        };
        assert_ne!(key.dir_name(), other.dir_name());
        let rewritten = Key {
            ctime_nsec: 8,
            ..key.clone()
        };
        assert_ne!(key.dir_name(), rewritten.dir_name());
    }

    #[test]
    fn keys_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        fs::write(&p, b"one").unwrap();
        let extent = Extent { offset: 0, size: 3 };
        let a = Key::of(&fs::metadata(&p).unwrap(), extent);
        assert_eq!(a, Key::of(&fs::metadata(&p).unwrap(), extent));
        // Replaced by a new file (what `cp` and `apptainer build` do).
        let q = dir.path().join("img.new");
        fs::write(&q, b"two").unwrap();
        fs::rename(&q, &p).unwrap();
        assert_ne!(a, Key::of(&fs::metadata(&p).unwrap(), extent));
    }

    #[test]
    fn keys_see_a_rewrite_with_the_old_mtime_restored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        fs::write(&p, b"one").unwrap();
        let extent = Extent { offset: 0, size: 3 };
        let before = fs::metadata(&p).unwrap();
        let a = Key::of(&before, extent);
        std::thread::sleep(Duration::from_millis(20));
        // Same inode, same size, then `touch -d` the old mtime back.
        fs::write(&p, b"two").unwrap();
        let old = std::fs::FileTimes::new().set_modified(before.modified().unwrap());
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_times(old)
            .unwrap();
        let b = Key::of(&fs::metadata(&p).unwrap(), extent);
        assert_eq!(
            (a.ino, a.mtime_sec, a.mtime_nsec),
            (b.ino, b.mtime_sec, b.mtime_nsec)
        );
        assert_ne!(a.dir_name(), b.dir_name());
    }

    #[test]
    fn holders_round_trip_and_die() {
        let me = Holder::current().unwrap();
        assert!(me.alive());
        assert_eq!(Holder::parse(&me.file_name()), Some(me));
        assert!(
            !Holder {
                start: me.start + 1,
                ..me
            }
            .alive(),
            "a reused pid is not the holder"
        );
        assert_eq!(Holder::parse("x-1"), None);
    }

    #[test]
    fn reaping_drops_dead_holders_and_keeps_live_ones() {
        let run = crate::run_dir::testdir::new("cache-reap");
        let cache = Cache::new(&run);
        let me = Holder::current().unwrap();
        for (name, holder) in [
            ("a", me),
            (
                "b",
                Holder {
                    pid: me.pid,
                    start: me.start + 1,
                },
            ),
        ] {
            let holders = run.join("images").join(name).join("holders");
            fs::create_dir_all(&holders).unwrap();
            fs::create_dir_all(run.join("images").join(name).join("root")).unwrap();
            File::create(holders.join(holder.file_name())).unwrap();
        }
        let reaped = cache.reap(Duration::ZERO).unwrap();
        assert_eq!(reaped.dead_holders, 1);
        assert!(reaped.unmounted.is_empty(), "nothing was mounted");
        assert!(
            run.join("images/a").exists(),
            "a live holder keeps its image"
        );
        assert!(
            !run.join("images/b").exists(),
            "an idle, unmounted image is removed"
        );
    }

    #[test]
    fn a_killed_holder_no_longer_keeps_its_image() {
        let run = crate::run_dir::testdir::new("cache-killed");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        let holder = Holder {
            pid,
            start: process::start_time(pid as i32).unwrap(),
        };
        assert!(holder.alive());
        let holders = run.join("images/cd/holders");
        fs::create_dir_all(&holders).unwrap();
        File::create(holders.join(holder.file_name())).unwrap();
        let cache = Cache::new(&run);
        assert_eq!(cache.reap(Duration::ZERO).unwrap().dead_holders, 0);
        assert!(run.join("images/cd").exists(), "a live holder keeps it");
        child.kill().unwrap();
        // Unreaped, the killed process is a zombie: not alive either.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while holder.alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!holder.alive(), "a SIGKILLed zombie is not a holder");
        child.wait().unwrap();
        let reaped = cache.reap(Duration::ZERO).unwrap();
        assert_eq!(reaped.dead_holders, 1);
        assert!(!run.join("images/cd").exists());
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let run = crate::run_dir::testdir::new("cache-dry");
        let me = Holder::current().unwrap();
        let dead = Holder {
            pid: me.pid,
            start: me.start + 1,
        };
        let holders = run.join("images/ab/holders");
        fs::create_dir_all(&holders).unwrap();
        File::create(holders.join(dead.file_name())).unwrap();
        let cache = Cache::new(&run);
        let planned = cache.plan_reap(Duration::ZERO).unwrap();
        assert_eq!(planned.dead_holders, 1);
        assert!(holders.join(dead.file_name()).exists(), "dry run kept it");
        let reaped = cache.reap(Duration::ZERO).unwrap();
        assert_eq!(reaped.dead_holders, 1);
        assert!(!run.join("images/ab").exists());
    }

    #[test]
    fn kept_scripts_round_trip() {
        let scripts = vec![
            Script {
                name: "01-base.sh".into(),
                text: "#!/bin/sh\n".into(),
            },
            Script {
                name: "90-environment.sh".into(),
                text: "export A=1\n".into(),
            },
        ];
        assert_eq!(decode_scripts(&encode_scripts(&scripts)), scripts);
        assert_eq!(decode_scripts(b""), vec![]);
        assert_ne!(key_hash("a"), key_hash("b"));
    }

    #[test]
    fn an_image_used_recently_stays() {
        let run = crate::run_dir::testdir::new("cache-recent");
        let holders = run.join("images/ab/holders");
        fs::create_dir_all(&holders).unwrap();
        let cache = Cache::new(&run);
        cache.reap(Duration::from_secs(300)).unwrap();
        assert!(holders.exists());
    }

    #[test]
    fn a_full_cache_refuses_new_images_naming_the_key() {
        let run = crate::run_dir::testdir::new("cache-cap");
        let me = Holder::current().unwrap();
        for name in ["a1", "a2"] {
            let holders = run.join("images").join(name).join("holders");
            fs::create_dir_all(&holders).unwrap();
            File::create(holders.join(me.file_name())).unwrap();
            fs::write(run.join("images").join(name).join("owner"), "1000").unwrap();
        }
        let images = || Dir::open(&run).unwrap().subdir("images").unwrap();
        let limits = |max_images, per_user| Limits {
            max_images,
            max_images_per_user: per_user,
            uid: Some(1000),
        };
        let cache = Cache::new(&run).limited(limits(2, 16));
        let err = cache.check_room(&images(), "b1").unwrap_err().to_string();
        assert!(err.contains("already has 2 mounted images"), "{err}");
        assert!(err.contains("`max_images=2`"), "{err}");
        assert!(
            cache.check_room(&images(), "a1").is_ok(),
            "a mounted key is reused"
        );
        let cache = Cache::new(&run).limited(limits(256, 2));
        let err = cache.check_room(&images(), "b1").unwrap_err().to_string();
        assert!(err.contains("`max_images_per_user=2`"), "{err}");
        let other = Cache::new(&run).limited(Limits {
            uid: Some(1001),
            ..limits(256, 2)
        });
        assert!(other.check_room(&images(), "b1").is_ok());
    }
}
