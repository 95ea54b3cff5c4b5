//! Who the task is inside the image: the user's passwd entry and groups,
//! merged into the image's own /etc/passwd and /etc/group so `id`, `whoami`
//! and `ls -l` resolve names.

use std::ffi::CStr;
use std::io;

/// A passwd entry of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// A group of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// The task's identity: the user and the groups (primary first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: User,
    pub groups: Vec<Group>,
}

impl User {
    fn line(&self) -> String {
        format!(
            "{}:x:{}:{}:{}:{}:{}",
            self.name, self.uid, self.gid, self.gecos, self.home, self.shell
        )
    }
}

/// The image's passwd with the user's entry in place of any entry of the same
/// name or uid.
pub fn merged_passwd(image: &str, user: &User) -> String {
    let mut out = String::new();
    for line in image.lines() {
        let mut f = line.split(':');
        let name = f.next().unwrap_or_default();
        let uid = f.nth(1).and_then(|u| u.parse::<u32>().ok());
        if name == user.name || uid == Some(user.uid) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&user.line());
    out.push('\n');
    out
}

/// The image's group file with the user's groups in place of any group of the
/// same name or gid; the user is listed as a member of each.
pub fn merged_group(image: &str, identity: &Identity) -> String {
    let mut out = String::new();
    for line in image.lines() {
        let mut f = line.split(':');
        let name = f.next().unwrap_or_default();
        let gid = f.nth(1).and_then(|g| g.parse::<u32>().ok());
        let clash = identity
            .groups
            .iter()
            .any(|g| g.name == name || Some(g.gid) == gid);
        if clash {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for g in &identity.groups {
        let members = if g.gid == identity.user.gid {
            ""
        } else {
            &identity.user.name
        };
        out.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, members));
    }
    out
}

/// Looks the user and their groups up on the host (NSS), before any fork.
pub fn lookup(uid: u32, gid: u32, supplementary: &[u32]) -> io::Result<Identity> {
    let user = lookup_user(uid)?;
    let mut gids = vec![gid];
    for g in supplementary {
        if !gids.contains(g) {
            gids.push(*g);
        }
    }
    let groups = gids
        .into_iter()
        .map(|g| {
            Ok(Group {
                name: lookup_group_name(g)?.unwrap_or_else(|| format!("group{g}")),
                gid: g,
            })
        })
        .collect::<io::Result<_>>()?;
    Ok(Identity { user, groups })
}

fn text(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: NSS returned a NUL-terminated string inside our buffer.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn lookup_user(uid: u32) -> io::Result<User> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be filled in.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r writes into pw and buf (of the length given).
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("uid {uid} has no passwd entry on this node"),
            ));
        }
        return Ok(User {
            name: text(pw.pw_name),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            gecos: text(pw.pw_gecos).replace(':', " "),
            home: text(pw.pw_dir),
            shell: text(pw.pw_shell),
        });
    }
}

fn lookup_group_name(gid: u32) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; 4096];
    loop {
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
        if rc == libc::ERANGE && buf.len() < (1 << 22) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        return Ok((!result.is_null()).then(|| text(gr.gr_name)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            user: User {
                name: "alice".into(),
                uid: 5001,
                gid: 5001,
                gecos: "Alice".into(),
                home: "/home/alice".into(),
                shell: "/bin/bash".into(),
            },
            groups: vec![
                Group {
                    name: "alice".into(),
                    gid: 5001,
                },
                Group {
                    name: "proj".into(),
                    gid: 7000,
                },
            ],
        }
    }

    #[test]
    fn passwd_keeps_the_image_entries_and_adds_the_user() {
        let image = "root:x:0:0:root:/root:/bin/sh\nold:x:5001:5001::/home/old:/bin/sh\nalice:x:9:9::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\n";
        let out = merged_passwd(image, &alice().user);
        assert_eq!(
            out,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nalice:x:5001:5001:Alice:/home/alice:/bin/bash\n"
        );
    }

    #[test]
    fn passwd_of_an_image_without_one_has_the_user_only() {
        assert_eq!(
            merged_passwd("", &alice().user),
            "alice:x:5001:5001:Alice:/home/alice:/bin/bash\n"
        );
    }

    #[test]
    fn group_lists_the_user_in_supplementary_groups() {
        let image = "root:x:0:\nproj:x:1234:bob\nusers:x:7000:\nwheel:x:10:\n";
        let out = merged_group(image, &alice());
        assert_eq!(
            out,
            "root:x:0:\nwheel:x:10:\nalice:x:5001:\nproj:x:7000:alice\n"
        );
    }

    #[test]
    fn root_resolves_on_the_host() {
        let id = lookup(0, 0, &[0]).unwrap();
        assert_eq!(id.user.name, "root");
        assert_eq!(id.groups.len(), 1);
    }
}
