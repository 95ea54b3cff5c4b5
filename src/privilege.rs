//! Regaining root in slurmstepd's `user_init` (euid = the user, ruid = 0) for
//! exactly as long as a guard lives; used by the cpuset and container code.

use std::io;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

fn seteuid(uid: u32) -> io::Result<()> {
    // SAFETY: seteuid takes a plain id.
    check(unsafe { libc::seteuid(uid) })
}

fn setegid(gid: u32) -> io::Result<()> {
    // SAFETY: setegid takes a plain id.
    check(unsafe { libc::setegid(gid) })
}

/// Effective uid and gid 0 until dropped; then the previous ones again.
#[must_use = "root is given back when the guard is dropped"]
pub struct RootGuard {
    previous: Option<(u32, u32)>,
}

impl RootGuard {
    /// Switches the effective ids to root (a no-op when they already are).
    pub fn regain() -> io::Result<RootGuard> {
        let (uid, gid) = effective_ids();
        if uid == 0 && gid == 0 {
            return Ok(RootGuard { previous: None });
        }
        seteuid(0)?;
        let guard = RootGuard {
            previous: Some((uid, gid)),
        };
        setegid(0)?;
        Ok(guard)
    }
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        let Some((uid, gid)) = self.previous else {
            return;
        };
        // The gid must change while the euid is still 0.
        if let Err(e) = setegid(gid).and_then(|_| seteuid(uid)) {
            log::error!("cannot give up root again (back to uid {uid} gid {gid}): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_taken_as_root_changes_nothing() {
        let before = effective_ids();
        if before != (0, 0) {
            return; // regaining root needs ruid 0: covered by the e2e tests
        }
        {
            let _guard = RootGuard::regain().unwrap();
            assert_eq!(effective_ids(), (0, 0));
        }
        assert_eq!(effective_ids(), before);
    }
}
