//! Who the task is inside the image: the user's passwd entry and groups,
//! merged into the image's own /etc/passwd and /etc/group so `id`, `whoami`
//! and `ls -l` resolve names.

use crate::nss;
use std::io;

/// A passwd entry of the host.
pub use crate::nss::Passwd as User;

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

/// The user's /etc/passwd line (a ':' in the GECOS field would break it).
fn passwd_line(user: &User) -> String {
    format!(
        "{}:x:{}:{}:{}:{}:{}",
        user.name,
        user.uid,
        user.gid,
        user.gecos.replace(':', " "),
        user.home,
        user.shell
    )
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
    out.push_str(&passwd_line(user));
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
                name: nss::group_name(g)?.unwrap_or_else(|| format!("group{g}")),
                gid: g,
            })
        })
        .collect::<io::Result<_>>()?;
    Ok(Identity { user, groups })
}

fn lookup_user(uid: u32) -> io::Result<User> {
    nss::user_by_uid(uid)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("uid {uid} has no passwd entry on this node"),
        )
    })
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
    fn a_colon_in_the_gecos_field_cannot_add_passwd_fields() {
        let mut user = alice().user;
        user.gecos = "Alice:0:0".into();
        assert_eq!(
            merged_passwd("", &user),
            "alice:x:5001:5001:Alice 0 0:/home/alice:/bin/bash\n"
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
