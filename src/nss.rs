//! The node's user and group database (NSS: /etc/passwd, LDAP, sssd ...), in
//! one place for the container identity, cgrules matching and `berth doctor`.

use std::ffi::{c_char, CStr, CString};
use std::io;

/// A passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: NSS returned a NUL-terminated string inside the caller's buffer.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Calls a reentrant NSS lookup with a buffer that grows on ERANGE; `call`
/// gets the buffer and returns the lookup's rc and whether an entry was found.
fn with_buffer<T>(
    mut call: impl FnMut(&mut [u8]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match call(&mut buf) {
            (libc::ERANGE, _) if buf.len() < (1 << 22) => buf.resize(buf.len() * 4, 0),
            (0, found) => return Ok(found),
            (rc, _) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

fn passwd_lookup(
    lookup: impl Fn(*mut libc::passwd, &mut [u8], *mut *mut libc::passwd) -> libc::c_int,
) -> io::Result<Option<Passwd>> {
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value to be filled in.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = lookup(&mut pw, buf, &mut result);
        let found = (rc == 0 && !result.is_null()).then(|| Passwd {
            name: text(pw.pw_name),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            gecos: text(pw.pw_gecos),
            home: text(pw.pw_dir),
            shell: text(pw.pw_shell),
        });
        (rc, found)
    })
}

/// The passwd entry of `uid`, `None` if it has none.
pub fn user_by_uid(uid: u32) -> io::Result<Option<Passwd>> {
    passwd_lookup(|pw, buf, result| {
        // SAFETY: getpwuid_r writes into pw and buf (of the length given).
        unsafe { libc::getpwuid_r(uid, pw, buf.as_mut_ptr().cast(), buf.len(), result) }
    })
}

/// The passwd entry named `name`, `None` if there is none.
pub fn user_by_name(name: &str) -> io::Result<Option<Passwd>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    passwd_lookup(|pw, buf, result| {
        // SAFETY: getpwnam_r writes into pw and buf (of the length given).
        unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                result,
            )
        }
    })
}

/// The name of group `gid`, `None` if it has none.
pub fn group_name(gid: u32) -> io::Result<Option<String>> {
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid value to be filled in.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: getgrgid_r writes into gr and buf (of the length given).
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc, (rc == 0 && !result.is_null()).then(|| text(gr.gr_name)))
    })
}

/// Every group `user` belongs to, `gid` included (getgrouplist).
pub fn group_list(user: &str, gid: u32) -> Vec<u32> {
    let Ok(cuser) = CString::new(user) else {
        return vec![gid];
    };
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: the buffer holds n entries; getgrouplist writes at most n and
        // sets n to the number it needs when that is more.
        let rc = unsafe { libc::getgrouplist(cuser.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n as usize <= groups.len() || groups.len() >= 65536 {
            return vec![gid];
        }
        groups.resize(n as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_uid_and_by_name() {
        let root = user_by_uid(0).unwrap().expect("uid 0 has a passwd entry");
        assert_eq!(root.name, "root");
        assert_eq!(user_by_name("root").unwrap(), Some(root));
        assert_eq!(group_name(0).unwrap().as_deref(), Some("root"));
        assert!(group_list("root", 0).contains(&0));
    }

    #[test]
    fn unknown_ids_and_names_are_none() {
        assert_eq!(user_by_uid(4_000_000_000).unwrap(), None);
        assert_eq!(user_by_name("no-such-user-berth").unwrap(), None);
        assert_eq!(user_by_name("bad\0name").unwrap(), None);
        assert_eq!(group_name(4_000_000_000).unwrap(), None);
    }
}
