//! The raw Linux calls the container code makes, each behind a small safe
//! function: loop devices, the mount API (old and new), namespaces,
//! `pivot_root`, `openat2` and effective ids. All `unsafe` of
//! `crate::container` lives here.

use crate::openat2::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn check_long(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Wraps a descriptor a successful syscall returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the caller passes a descriptor the kernel just returned to us
    // and that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

// ---- loop devices (linux/loop.h) -------------------------------------------

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

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

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// The number of a free loop device (`LOOP_CTL_GET_FREE`).
pub fn loop_get_free(control: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
    let n = check(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
    Ok(n as u32)
}

/// Attaches `file` to the loop device `dev`, read-only and autoclear, limited
/// to `size` bytes from `offset` (`LOOP_CONFIGURE`, one ioctl).
pub fn loop_configure(
    dev: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    size: u64,
) -> io::Result<()> {
    let mut name = [0u8; 64];
    let label = b"berth";
    name[..label.len()].copy_from_slice(label);
    let config = LoopConfig {
        fd: file.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: offset,
            lo_sizelimit: size,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: name,
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads a struct loop_config, which `config` is
    // laid out as (repr(C), same field order and sizes as linux/loop.h).
    check(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE,
            &config as *const LoopConfig,
        )
    })?;
    Ok(())
}

// ---- mounts ------------------------------------------------------------------

/// mount(2).
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let source = source.map(cpath).transpose()?;
    let target = cpath(target)?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })?;
    Ok(())
}

/// umount2(2).
pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: target is a NUL-terminated path.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `fd` (open_tree with OPEN_TREE_CLONE,
/// recursive), ready to be attached elsewhere with [`move_mount`].
pub fn clone_tree(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | AT_RECURSIVE
        | libc::AT_EMPTY_PATH as libc::c_uint
        | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree(dfd, "", flags) with a valid descriptor and empty path.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    Ok(owned(check_long(rc)?))
}

/// Sets mount attributes on a whole (detached) tree and makes every mount of
/// it a slave (`MS_SLAVE`): mounts made later under the source still appear
/// in the copy, nothing mounted in the copy reaches the source's peers.
pub fn set_tree_attrs(tree: BorrowedFd<'_>, attr_set: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: libc::MS_SLAVE,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(dfd, "", AT_EMPTY_PATH|AT_RECURSIVE, &attr, size)
    // with a valid descriptor and a struct mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(rc)?;
    Ok(())
}

/// Attaches a detached tree at `target` (resolved from the current root).
pub fn move_mount(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: move_mount(tree, "", AT_FDCWD, target, F_EMPTY_PATH) with valid
    // pointers to NUL-terminated strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check_long(rc)?;
    Ok(())
}

/// Attaches a detached tree on the file or directory `target` refers to (an
/// `O_PATH` descriptor): no path is resolved again.
pub fn move_mount_to_fd(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: move_mount(tree, "", target, "", F_EMPTY_PATH|T_EMPTY_PATH)
    // with valid descriptors and static empty strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check_long(rc)?;
    Ok(())
}

/// pivot_root(".", "."): the current directory becomes the root, the old root
/// is stacked beneath it (and then detached by the caller).
pub fn pivot_root_here() -> io::Result<()> {
    // SAFETY: both arguments are the static string ".".
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check_long(rc)?;
    Ok(())
}

// ---- namespaces --------------------------------------------------------------

/// Gives the calling thread a mount namespace (and fs struct) of its own.
pub fn unshare_mount_ns() -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    Ok(())
}

/// Makes every mount of the calling thread's namespace private.
pub fn make_mounts_private() -> io::Result<()> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

/// Makes every mount of the calling thread's namespace a slave of its peer
/// group (Apptainer's `mount slave = yes`): host mounts made later under a
/// bound path appear inside, nothing mounted here propagates back to the
/// namespace it was copied from (even when the host's mounts are shared).
pub fn make_mounts_slave() -> io::Result<()> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )
}

/// Sets no_new_privs on the calling thread: nothing it execs gains
/// privileges (setuid bits, file capabilities), inherited by its children.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(())
}

/// Moves the calling thread into the mount namespace `ns`; its root and
/// working directory become the namespace's root.
pub fn enter_mount_ns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns with a valid descriptor and a namespace type.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) })?;
    Ok(())
}

/// fchdir(2).
pub fn fchdir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fchdir on a valid descriptor.
    check(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    Ok(())
}

// ---- files ---------------------------------------------------------------------

/// Opens `path` for reading as if `root` were `/`: no symlink or `..` leaves
/// `root` (openat2 with RESOLVE_IN_ROOT).
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK;
    openat2(
        root,
        &cpath(path)?,
        flags,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `path` as an `O_PATH` descriptor as if `root` were `/`: symlinks
/// (also a last one) and `..` resolve inside `root`, magic links are refused.
pub fn open_path_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    openat2(
        root,
        &cpath(path)?,
        libc::O_PATH,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Whether the calling credentials (effective uid and groups) may read the
/// file `fd` refers to (faccessat2 with AT_EMPTY_PATH | AT_EACCESS).
pub fn can_read(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: faccessat2(fd, "", R_OK, flags) with a valid descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::R_OK,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    };
    match check_long(rc) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The filesystem type (statfs f_type) of the file at `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let c = cpath(path)?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: statfs writes a struct statfs into buf.
    check(unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) })?;
    // SAFETY: statfs succeeded, so buf is initialised.
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    Ok(unsafe { buf.assume_init() }.f_type as i64)
}

pub const SQUASHFS_MAGIC: i64 = 0x7371_7368;
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

// ---- effective ids -----------------------------------------------------------

/// Writes all of `bytes` to `fd` (used for the one user-facing error line).
pub fn write_all_raw(fd: RawFd, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: rest is a valid readable buffer of rest.len() bytes.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// flock(fd, LOCK_EX), retried on EINTR.
pub fn flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: flock on a valid descriptor.
        match check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(|_| ()),
        }
    }
}
