//! The process-level facts and changes: threads, CPU affinity, identity.

use std::fs;
use std::io;

use crate::cpuset::CpuSet;

/// The thread ids of a process (/proc/PID/task).
pub fn threads(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    tids.sort_unstable();
    tids
}

/// A thread's or process's CPU affinity.
pub fn affinity(tid: i32) -> io::Result<CpuSet> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .map(|c| c as u32)
            .collect())
    }
}

pub fn set_affinity(tid: i32, cpus: &CpuSet) -> io::Result<()> {
    // SAFETY: as above; CPU_SET only touches bits below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus
            .iter()
            .filter(|&c| (c as usize) < libc::CPU_SETSIZE as usize)
        {
            libc::CPU_SET(c as usize, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The start time of a running process (field 22 of /proc/PID/stat), to tell
/// a live process from a later one that reuses its pid; `None` when there is
/// no such process or it has exited (a zombie runs nothing any more).
pub fn start_time(pid: i32) -> Option<u64> {
    parse_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 (start time) of a /proc/PID/stat line, `None` for a process
/// that has exited (state Z or X).
pub fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last ')'. Field 3 (state) is then the first after it; 22 the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Whether `pid` is a process that has not exited (zombies have).
pub fn is_running(pid: i32) -> bool {
    start_time(pid).is_some()
}

/// The user's name, primary group name and all group names (for cgrules).
pub fn identity(uid: u32, gid: u32) -> crate::cgroup::rules::Identity {
    let user = crate::nss::user_by_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |pw| pw.name);
    let group = group_name(gid);
    let mut groups = vec![group.clone()];
    groups.extend(
        crate::nss::group_list(&user, gid)
            .into_iter()
            .filter(|&g| g != gid)
            .map(group_name),
    );
    crate::cgroup::rules::Identity {
        uid,
        user,
        gid,
        group,
        groups,
    }
}

fn group_name(gid: u32) -> String {
    crate::nss::group_name(gid)
        .ok()
        .flatten()
        .unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_threads_affinity_and_a_start_time() {
        let pid = std::process::id() as i32;
        assert!(threads(pid).contains(&pid));
        let mine = affinity(0).unwrap();
        assert!(!mine.is_empty());
        set_affinity(0, &mine).unwrap();
        let start = start_time(pid).unwrap();
        assert!(is_alive(pid, start));
        assert!(!is_alive(pid, start + 1));
        assert!(is_running(pid));
    }

    #[test]
    fn start_time_survives_odd_command_names_and_zombies_do_not_run() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_time(stat), Some(98765));
        let zombie = "42 (slurmstepd) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_time(zombie), None, "a zombie holds nothing");
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(identity(0, 0).user, "root");
        assert_eq!(identity(0, 0).group, "root");
    }
}
