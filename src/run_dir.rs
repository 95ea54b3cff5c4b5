//! The one way root touches run_dir: a checked directory descriptor.
//!
//! slurmstepd runs berth as root with the job's umask, and users can often
//! write near run_dir. So nothing here follows a path: `open` checks every
//! component of run_dir from `/` (owned by root or the euid, not group- or
//! other-writable, not a symlink; a parent may be a root-owned sticky dir such
//! as /tmp), and everything below it is reached with
//! openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
//! relative to that descriptor. Modes are set explicitly (fchmod after
//! create), so the umask never matters. Names are single components.

use crate::openat2::{RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Why run_dir or something under it was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("run_dir {path}: must be an absolute path without '.' or '..'")]
    NotAbsolute { path: PathBuf },
    #[error("run_dir {path}: {why}; refused (make it root-owned, mode 0755 or stricter)")]
    Unsafe { path: PathBuf, why: String },
    #[error("run_dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("run_dir entry {name:?}: not a single plain file name")]
    BadName { name: String },
    #[error("run_dir entry {name}: {why}")]
    Untrusted { name: String, why: String },
}

type Result<T> = std::result::Result<T, RunDirError>;

/// openat2 beneath `dir`, never following a symlink; the fd is O_CLOEXEC.
fn openat2(dir: BorrowedFd<'_>, name: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    crate::openat2::openat2(dir, &c, flags | libc::O_NOFOLLOW, mode, resolve)
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: st is written by the kernel before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we own.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

/// A name berth may create: one component, no '/', not '.' or '..', no NUL
/// or newline, at most 200 bytes.
pub fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 200
        || name.bytes().any(|b| b == b'/' || b == 0 || b == b'\n');
    if bad {
        return Err(RunDirError::BadName {
            name: name.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// Owned by root or by us, not group/other-writable: what root may trust.
fn trusted_owner_and_mode(st: &libc::stat) -> std::result::Result<(), String> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(format!("owned by uid {}, not root", st.st_uid));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!(
            "mode {:04o} is group- or other-writable",
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

/// A checked handle on a directory under which root creates things.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens run_dir, checking every component from `/`, and creates the
    /// last one 0755 if it is missing.
    pub fn open(path: &Path) -> Result<Dir> {
        if !path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
        {
            return Err(RunDirError::NotAbsolute { path: path.into() });
        }
        let root = File::open("/").map_err(|e| io_err(Path::new("/"), e))?;
        let mut dir = Dir {
            fd: root.into(),
            path: PathBuf::from("/"),
        };
        dir.check_self(true)?;
        let names: Vec<_> = path.components().skip(1).collect();
        for (i, c) in names.iter().enumerate() {
            let name = c.as_os_str().to_string_lossy().into_owned();
            let last = i + 1 == names.len();
            if last {
                dir.create_missing_dir(&name, 0o755)?;
            }
            dir = dir.open_existing_dir(&name, !last)?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Checks this directory; a parent of run_dir may also be a root-owned
    /// sticky directory such as /tmp or /var/tmp (users cannot replace
    /// root's entries in it).
    fn check_self(&self, parent: bool) -> Result<()> {
        let st = fstat(self.fd()).map_err(|e| io_err(&self.path, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return self.unsafe_err("not a directory");
        }
        if parent && st.st_uid == 0 && st.st_mode & libc::S_ISVTX != 0 {
            return Ok(());
        }
        trusted_owner_and_mode(&st).or_else(|why| self.unsafe_err(&why))
    }

    fn unsafe_err<T>(&self, why: &str) -> Result<T> {
        Err(RunDirError::Unsafe {
            path: self.path.clone(),
            why: why.into(),
        })
    }

    fn child_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// mkdirat + fchmod when `name` is missing; an existing one is left
    /// as it is (and checked by whoever opens it).
    fn create_missing_dir(&self, name: &str, mode: u32) -> Result<()> {
        check_name(name)?;
        let c = CString::new(name).expect("checked: no NUL");
        // SAFETY: c outlives the call.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Ok(());
            }
            return Err(io_err(&self.child_path(name), e));
        }
        let fd = openat2(self.fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| self.symlink_or_io(name, e))?;
        fchmod(fd.as_fd(), mode).map_err(|e| io_err(&self.child_path(name), e))
    }

    fn open_existing_dir(&self, name: &str, parent: bool) -> Result<Dir> {
        let fd = openat2(self.fd(), name, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| self.symlink_or_io(name, e))?;
        let dir = Dir {
            fd,
            path: self.child_path(name),
        };
        dir.check_self(parent)?;
        Ok(dir)
    }

    fn symlink_or_io(&self, name: &str, e: io::Error) -> RunDirError {
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) => RunDirError::Unsafe {
                path: self.child_path(name),
                why: "is a symlink (or leads outside its parent)".into(),
            },
            Some(libc::ENOTDIR) => RunDirError::Unsafe {
                path: self.child_path(name),
                why: if self.is_symlink(name) {
                    "is a symlink".into()
                } else {
                    "not a directory".into()
                },
            },
            _ => io_err(&self.child_path(name), e),
        }
    }

    fn is_symlink(&self, name: &str) -> bool {
        let Ok(c) = CString::new(name) else {
            return false;
        };
        // SAFETY: st is written by the kernel before it is read; c outlives the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let flags = libc::AT_SYMLINK_NOFOLLOW;
        let r = unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, flags) };
        r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// The directory `name` under this one, created 0700 if missing; an
    /// existing one must be ours and is set to 0700.
    pub fn subdir(&self, name: &str) -> Result<Dir> {
        self.subdir_mode(name, 0o700)
    }

    /// Like `subdir` with an explicit mode (fchmod'd, whatever the umask).
    pub fn subdir_mode(&self, name: &str, mode: u32) -> Result<Dir> {
        check_name(name)?;
        let c = CString::new(name).expect("checked: no NUL");
        // SAFETY: c outlives the call.
        let made = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) };
        let made = if made == 0 {
            true
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(io_err(&self.child_path(name), e));
            }
            false
        };
        let fd = openat2(self.fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| self.symlink_or_io(name, e))?;
        let st = fstat(fd.as_fd()).map_err(|e| io_err(&self.child_path(name), e))?;
        // SAFETY: geteuid cannot fail.
        if st.st_uid != unsafe { libc::geteuid() } && st.st_uid != 0 {
            return Err(RunDirError::Unsafe {
                path: self.child_path(name),
                why: format!("owned by uid {}, not root", st.st_uid),
            });
        }
        if made || st.st_mode & 0o7777 != mode {
            fchmod(fd.as_fd(), mode).map_err(|e| io_err(&self.child_path(name), e))?;
        }
        Ok(Dir {
            fd,
            path: self.child_path(name),
        })
    }

    /// Opens `name` for appending, creating it 0600; it must be a regular
    /// file of ours.
    pub fn open_or_create_file(&self, name: &str) -> Result<File> {
        check_name(name)?;
        let fd = openat2(
            self.fd(),
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_APPEND,
            0o600,
        )
        .map_err(|e| self.symlink_or_io(name, e))?;
        self.own_regular(name, fd, 0o600)
    }

    /// Creates `name` 0600, truncating an existing file of ours.
    pub fn create_file(&self, name: &str) -> Result<File> {
        check_name(name)?;
        let fd = openat2(
            self.fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        )
        .map_err(|e| self.symlink_or_io(name, e))?;
        self.own_regular(name, fd, 0o600)
    }

    fn own_regular(&self, name: &str, fd: OwnedFd, mode: u32) -> Result<File> {
        let st = fstat(fd.as_fd()).map_err(|e| io_err(&self.child_path(name), e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.untrusted(name, "not a regular file"));
        }
        // SAFETY: geteuid cannot fail.
        if st.st_uid != unsafe { libc::geteuid() } && st.st_uid != 0 {
            return Err(self.untrusted(name, &format!("owned by uid {}", st.st_uid)));
        }
        if st.st_mode & 0o7777 != mode {
            fchmod(fd.as_fd(), mode).map_err(|e| io_err(&self.child_path(name), e))?;
        }
        Ok(File::from(fd))
    }

    fn untrusted(&self, name: &str, why: &str) -> RunDirError {
        RunDirError::Untrusted {
            name: self.child_path(name).display().to_string(),
            why: why.into(),
        }
    }

    /// Writes `name` (0600) through a temporary file and renameat, so a
    /// reader sees the old or the new content, never half.
    pub fn write_atomically(&self, name: &str, content: &[u8]) -> Result<()> {
        check_name(name)?;
        let tmp = format!(".{name}.tmp");
        check_name(&tmp)?;
        let mut f = self.create_file(&tmp)?;
        f.write_all(content)
            .and_then(|_| f.sync_data())
            .map_err(|e| io_err(&self.child_path(&tmp), e))?;
        let (a, b) = (
            CString::new(tmp.as_str()).unwrap(),
            CString::new(name).unwrap(),
        );
        let fd = self.fd.as_raw_fd();
        // SAFETY: both names outlive the call; both are relative to fd.
        cvt(unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) })
            .map_err(|e| io_err(&self.child_path(name), e))
    }

    /// Reads `name`, which must be a regular file owned by root (or us),
    /// not group/other-writable, and at most `limit` bytes. `Ok(None)` if
    /// it does not exist.
    pub fn read_file(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        let fd = match openat2(self.fd(), name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(self.symlink_or_io(name, e)),
        };
        let st = fstat(fd.as_fd()).map_err(|e| io_err(&self.child_path(name), e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.untrusted(name, "not a regular file"));
        }
        trusted_owner_and_mode(&st).map_err(|why| self.untrusted(name, &why))?;
        if st.st_size as u64 > limit {
            return Err(self.untrusted(name, &format!("{} bytes, more than {limit}", st.st_size)));
        }
        let mut buf = Vec::new();
        File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&self.child_path(name), e))?;
        if buf.len() as u64 > limit {
            return Err(self.untrusted(name, &format!("grew past {limit} bytes")));
        }
        Ok(Some(buf))
    }

    /// Removes the file `name`; a missing one is fine.
    pub fn remove_file(&self, name: &str) -> Result<()> {
        self.unlink(name, 0)
    }

    /// Removes the empty directory `name`; a missing one is fine.
    pub fn remove_dir(&self, name: &str) -> Result<()> {
        self.unlink(name, libc::AT_REMOVEDIR)
    }

    fn unlink(&self, name: &str, flags: i32) -> Result<()> {
        check_name(name)?;
        let c = CString::new(name).unwrap();
        // SAFETY: c outlives the call. unlinkat never follows the last component.
        match cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), flags) }) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                Err(io_err(&self.child_path(name), e))
            }
            _ => Ok(()),
        }
    }

    /// The entries' names that `accept` allows; others are skipped.
    pub fn names(&self, accept: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let dir = openat2(self.fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| io_err(&self.path, e))?;
        let proc_path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let rd = std::fs::read_dir(&proc_path).map_err(|e| io_err(&self.path, e))?;
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Ok(name) = std::str::from_utf8(name.as_bytes()) else {
                continue;
            };
            if check_name(name).is_ok() && accept(name) {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// An exclusive flock on the file `name` (0600), held until dropped.
    pub fn lock(&self, name: &str) -> Result<Lock> {
        let f = self.open_or_create_file(name)?;
        // SAFETY: plain syscall on our descriptor.
        cvt(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) })
            .map_err(|e| io_err(&self.child_path(name), e))?;
        Ok(Lock { _file: f })
    }

    /// The directory `name` (0700) as an O_PATH descriptor, for mounting
    /// onto through /proc/self/fd without following a path.
    pub fn make_mount_point(&self, name: &str) -> Result<OwnedFd> {
        let d = self.subdir(name)?;
        openat2(d.fd(), ".", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| io_err(&self.child_path(name), e))
    }
}

impl Dir {
    /// An O_PATH descriptor on `name` (any type), never through a symlink.
    pub fn open_path(&self, name: &str) -> Result<OwnedFd> {
        check_name(name)?;
        openat2(self.fd(), name, libc::O_PATH, 0).map_err(|e| self.symlink_or_io(name, e))
    }

    /// Opens `name` read-only (e.g. a kept namespace file), never through a
    /// symlink.
    pub fn open_read(&self, name: &str) -> Result<File> {
        check_name(name)?;
        let fd =
            openat2(self.fd(), name, libc::O_RDONLY, 0).map_err(|e| self.symlink_or_io(name, e))?;
        Ok(File::from(fd))
    }

    /// Whether `name` is the root of a mount of filesystem type `magic`
    /// (another device than this directory, statfs type `magic`), checked
    /// on descriptors only.
    pub fn is_mount_of(&self, name: &str, magic: i64) -> bool {
        let Ok(fd) = self.open_path(name) else {
            return false;
        };
        let (Ok(here), Ok(parent)) = (fstat(fd.as_fd()), fstat(self.fd())) else {
            return false;
        };
        here.st_dev != parent.st_dev && fstatfs_type(fd.as_fd()).is_ok_and(|t| t == magic)
    }

    /// Modification time of the entry `name`.
    pub fn mtime_of(&self, name: &str) -> Option<std::time::SystemTime> {
        let fd = self.open_path(name).ok()?;
        let st = fstat(fd.as_fd()).ok()?;
        let d = std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        Some(std::time::UNIX_EPOCH + d)
    }
}

fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: st is written by the kernel before it is read.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// The /proc/self/fd path of a descriptor: the kernel resolves it to the
/// descriptor's own file, not to any name a user could swap.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// An flock(2) held while this lives.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn io_err(path: &Path, source: io::Error) -> RunDirError {
    RunDirError::Io {
        path: path.into(),
        source,
    }
}

/// The owner, mode and size of a file's metadata, for tests and checks.
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// A fresh, safe directory under target/ for unit tests (the temp dir
/// under /tmp is under a world-writable parent, which `open` refuses).
#[cfg(test)]
pub mod testdir {
    use std::path::PathBuf;

    pub fn new(tag: &str) -> PathBuf {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/run-dir-tests");
        std::fs::create_dir_all(&base).unwrap();
        let p = base.join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn umask(m: u32) -> u32 {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(m as libc::mode_t) as u32 }
    }

    #[test]
    fn names_are_single_components() {
        for bad in ["", ".", "..", "a/b", "/x", "a\nb", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("803-1234-1.000000005").is_ok());
    }

    #[test]
    fn open_creates_run_dir_0755_and_subdirs_0700_whatever_the_umask() {
        let p = testdir::new("modes");
        let old = umask(0);
        let dir = Dir::open(&p).unwrap();
        let sub = dir.subdir("images").unwrap();
        let f = sub.create_file("used").unwrap();
        drop(f);
        umask(old);
        let m = |q: &Path| mode_of(&std::fs::symlink_metadata(q).unwrap());
        assert_eq!(m(&p), 0o755);
        assert_eq!(m(&p.join("images")), 0o700);
        assert_eq!(m(&p.join("images/used")), 0o600);
    }

    #[test]
    fn a_writable_or_symlinked_run_dir_is_refused() {
        let p = testdir::new("unsafe");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Dir::open(&p).unwrap_err().to_string();
        assert!(err.contains("group- or other-writable"), "{err}");
        let link = testdir::new("link");
        symlink(&p, &link).unwrap();
        let err = Dir::open(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        assert!(
            Dir::open(Path::new("/tmp")).is_err(),
            "/tmp is world-writable"
        );
        assert!(Dir::open(Path::new("relative")).is_err());
    }

    #[test]
    fn symlinks_below_are_never_followed() {
        let p = testdir::new("links");
        let dir = Dir::open(&p).unwrap();
        let victim = p.with_extension("victim");
        std::fs::write(&victim, b"root's").unwrap();
        symlink(&victim, p.join("key")).unwrap();
        assert!(dir.create_file("key").is_err());
        assert!(dir.open_or_create_file("key").is_err());
        assert!(
            dir.write_atomically("key", b"x").is_ok(),
            "replaces the link itself"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's");
        std::fs::remove_file(p.join("key")).unwrap();
        symlink("/", p.join("root")).unwrap();
        assert!(dir.subdir("root").is_err());
        assert!(dir.make_mount_point("root").is_err());
        assert!(dir.read_file("root", 10).is_err());
        std::fs::remove_file(&victim).unwrap();
    }

    #[test]
    fn read_file_is_bounded_and_checks_the_mode() {
        let p = testdir::new("read");
        let dir = Dir::open(&p).unwrap();
        dir.write_atomically("state.json", b"{}").unwrap();
        assert_eq!(dir.read_file("state.json", 2).unwrap().unwrap(), b"{}");
        assert!(dir.read_file("state.json", 1).is_err());
        assert!(dir.read_file("missing", 1).unwrap().is_none());
        let f = p.join("state.json");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(dir.read_file("state.json", 10).is_err());
    }

    #[test]
    fn names_lists_and_remove_cleans() {
        let p = testdir::new("names");
        let dir = Dir::open(&p).unwrap();
        dir.create_file("12-34").unwrap();
        dir.subdir("holders").unwrap();
        let mut n = dir.names(|n| n.contains('-')).unwrap();
        n.sort();
        assert_eq!(n, ["12-34"]);
        dir.remove_file("12-34").unwrap();
        dir.remove_dir("holders").unwrap();
        dir.remove_file("12-34").unwrap();
        assert!(dir.names(|_| true).unwrap().is_empty());
        let _l = dir.lock("lock").unwrap();
    }
}
