//! Regaining root inside slurmstepd's `user_init` (euid = the user, ruid = 0)
//! for exactly as long as a guard lives.

use std::io;

use super::sys;

/// Effective uid and gid 0 until dropped; then the previous ones again.
#[must_use = "root is given back when the guard is dropped"]
pub struct RootGuard {
    previous: Option<(u32, u32)>,
}

impl RootGuard {
    /// Switches the effective ids to root (a no-op when they already are).
    pub fn regain() -> io::Result<RootGuard> {
        let (uid, gid) = sys::effective_ids();
        if uid == 0 && gid == 0 {
            return Ok(RootGuard { previous: None });
        }
        sys::seteuid(0)?;
        let guard = RootGuard {
            previous: Some((uid, gid)),
        };
        sys::setegid(0)?;
        Ok(guard)
    }
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        let Some((uid, gid)) = self.previous else {
            return;
        };
        // The gid must change while the euid is still 0.
        if let Err(e) = sys::setegid(gid).and_then(|_| sys::seteuid(uid)) {
            log::error!("cannot give up root after a container setup step (back to uid {uid} gid {gid}): {e}");
        }
    }
}

/// The user's effective ids until dropped (for opening files with their
/// rights from a root context, e.g. the integration tests).
#[must_use = "the previous ids come back when the guard is dropped"]
pub struct UserGuard {
    previous: (u32, u32),
}

impl UserGuard {
    /// Switches the effective ids to `uid`/`gid` (the caller is root).
    pub fn become_user(uid: u32, gid: u32) -> io::Result<UserGuard> {
        let previous = sys::effective_ids();
        sys::setegid(gid)?;
        let guard = UserGuard { previous };
        sys::seteuid(uid)?;
        Ok(guard)
    }
}

impl Drop for UserGuard {
    fn drop(&mut self) {
        let (uid, gid) = self.previous;
        if let Err(e) = sys::seteuid(uid).and_then(|_| sys::setegid(gid)) {
            log::error!("cannot restore uid {uid} gid {gid}: {e}");
        }
    }
}
