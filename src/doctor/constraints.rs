//! Every constraint on CPUs from outside Slurm that a step on this node
//! inherits or meets: slurmd's cpusets (v1 and v2) and their ancestors,
//! slurmd's affinity, cgrules.conf and cgrulesengd, systemd's AllowedCPUs,
//! and other cpuset cgroups that hold processes.
//!
//! Only the cpuset hierarchy (v1) and the unified one (v2) are read; the
//! memory hierarchy is never opened, not even listed.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup::cgred::{self, SocketState};
use crate::cgroup::rules::{self, Rule};
use crate::cgroup::{Cgroups, CpusetState, Group, Hierarchy, Membership, Mounts};
use crate::cpuset::CpuSet;
use crate::reconcile::facts::Sources;
use crate::reconcile::process;

/// A cgroup and its cpuset, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: Group,
    pub cpuset: Option<CpusetState>,
    pub error: Option<String>,
}

/// A slurmd thread whose affinity differs from the main thread's.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadAffinity {
    pub tid: i32,
    pub cpus: CpuSet,
}

/// cgrules.conf and its daemon.
#[derive(Debug, Clone, Serialize)]
pub struct CgrulesView {
    pub file: PathBuf,
    /// The rules that name the cpuset or cpu controller (or `*`).
    pub rules: Vec<Rule>,
    pub error: Option<String>,
    pub socket: PathBuf,
    /// Absent, stale (left over by a dead daemon) or listening.
    pub socket_state: SocketState,
    /// Running cgrulesengd processes (from /proc; zombies do not run).
    pub daemon_pids: Vec<i32>,
}

/// A systemd setting that bounds CPUs, and where it was found.
#[derive(Debug, Clone, Serialize)]
pub struct SystemdSetting {
    pub source: PathBuf,
    pub setting: String,
}

/// A cpuset cgroup outside Slurm's own that holds processes.
#[derive(Debug, Clone, Serialize)]
pub struct OccupiedGroup {
    pub group: Group,
    pub cpus: CpuSet,
    pub mems: CpuSet,
    pub processes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Constraints {
    pub mounts: Mounts,
    /// slurmd's cpuset group (v1) and its ancestors, root first.
    pub slurmd_cpuset: Vec<GroupView>,
    /// slurmd's group in the unified hierarchy (v2) and its ancestors, when
    /// the cpuset controller is enabled there.
    pub slurmd_unified: Vec<GroupView>,
    pub slurmd_affinity: Option<CpuSet>,
    pub slurmd_threads_differing: Vec<ThreadAffinity>,
    pub cgrules: CgrulesView,
    pub systemd: Vec<SystemdSetting>,
    pub occupied_cpusets: Vec<OccupiedGroup>,
}

/// At most this many occupied cpusets are listed (and this deep).
const MAX_OCCUPIED: usize = 50;
const MAX_DEPTH: usize = 8;

/// Reads every constraint; `slurmd` None when slurmd does not run.
pub fn gather(sources: &Sources, slurmd: Option<i32>) -> Constraints {
    let cg = Cgroups::new(sources.mounts.clone());
    let membership = slurmd.and_then(|pid| Membership::of_pid(pid).ok());
    let (slurmd_cpuset, slurmd_unified) = match &membership {
        Some(m) => lineages(&cg, m),
        None => (Vec::new(), Vec::new()),
    };
    let (slurmd_affinity, slurmd_threads_differing) = match slurmd {
        Some(pid) => affinities(pid),
        None => (None, Vec::new()),
    };
    let unified_path = membership.as_ref().and_then(|m| m.unified.clone());
    Constraints {
        mounts: sources.mounts.clone(),
        slurmd_cpuset,
        slurmd_unified,
        slurmd_affinity,
        slurmd_threads_differing,
        cgrules: cgrules(sources),
        systemd: systemd_settings(Path::new("/"))
            .into_iter()
            .chain(unified_allowed_cpus(&cg, unified_path.as_deref()))
            .collect(),
        occupied_cpusets: occupied(&cg),
    }
}

fn view(cg: &Cgroups, group: Group) -> GroupView {
    match cg.cpuset(&group) {
        Ok(state) => GroupView {
            group,
            cpuset: Some(state),
            error: None,
        },
        Err(e) => GroupView {
            group,
            cpuset: None,
            error: Some(e.to_string()),
        },
    }
}

fn lineages(cg: &Cgroups, m: &Membership) -> (Vec<GroupView>, Vec<GroupView>) {
    let lineage =
        |g: Group| -> Vec<GroupView> { g.lineage().into_iter().map(|g| view(cg, g)).collect() };
    let v1 = match (&cg.mounts.cpuset_v1, &m.cpuset_v1) {
        (Some(_), Some(p)) => lineage(Group::new(Hierarchy::CpusetV1, p)),
        _ => Vec::new(),
    };
    let v2 = match &m.unified {
        Some(p) if cg.mounts.v2_has_cpuset() => lineage(Group::new(Hierarchy::Unified, p)),
        _ => Vec::new(),
    };
    (v1, v2)
}

fn affinities(pid: i32) -> (Option<CpuSet>, Vec<ThreadAffinity>) {
    let Ok(main) = process::affinity(pid) else {
        return (None, Vec::new());
    };
    let differing = process::threads(pid)
        .into_iter()
        .filter_map(|tid| {
            let cpus = process::affinity(tid).ok()?;
            (cpus != main).then_some(ThreadAffinity { tid, cpus })
        })
        .collect();
    (Some(main), differing)
}

fn cgrules(sources: &Sources) -> CgrulesView {
    let (rules, error) = match rules::read(&sources.cgrules) {
        Ok(rules) => (rules, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let rules = rules
        .into_iter()
        .filter(|r| {
            r.controllers
                .iter()
                .any(|c| matches!(c.as_str(), "cpuset" | "cpu" | "*"))
        })
        .collect();
    CgrulesView {
        file: sources.cgrules.clone(),
        rules,
        error,
        socket: sources.cgred_socket.clone(),
        socket_state: cgred::socket_state(&sources.cgred_socket),
        daemon_pids: pids_named("cgrulesengd"),
    }
}

/// Processes whose command name is `name`.
pub fn pids_named(name: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
                && process::is_running(*pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The unit files and drop-ins where systemd may bound slurmd's CPUs.
const SYSTEMD_FILES: &[&str] = &[
    "etc/systemd/system.conf",
    "etc/systemd/system/slurmd.service",
    "run/systemd/system/slurmd.service",
    "lib/systemd/system/slurmd.service",
    "usr/lib/systemd/system/slurmd.service",
];
const SYSTEMD_DROPIN_DIRS: &[&str] = &[
    "etc/systemd/system/slurmd.service.d",
    "run/systemd/system/slurmd.service.d",
    "etc/systemd/system/system.slice.d",
    "run/systemd/system/system.slice.d",
];
const SYSTEMD_KEYS: &[&str] = &["AllowedCPUs=", "CPUAffinity=", "AllowedMemoryNodes="];

/// systemd settings that bound CPUs, from unit files and drop-ins under `root`.
pub fn systemd_settings(root: &Path) -> Vec<SystemdSetting> {
    let mut files: Vec<PathBuf> = SYSTEMD_FILES.iter().map(|f| root.join(f)).collect();
    for dir in SYSTEMD_DROPIN_DIRS {
        let mut dropins: Vec<PathBuf> = fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        dropins.sort();
        files.extend(dropins);
    }
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if SYSTEMD_KEYS.iter().any(|k| line.starts_with(k)) {
                out.push(SystemdSetting {
                    source: file.clone(),
                    setting: line.to_string(),
                });
            }
        }
    }
    out
}

/// Non-empty cpuset.cpus along slurmd's v2 path: what systemd's AllowedCPUs
/// writes (visible only when the unified hierarchy is mounted).
fn unified_allowed_cpus(cg: &Cgroups, path: Option<&str>) -> Vec<SystemdSetting> {
    let Some(path) = path else {
        return Vec::new();
    };
    Group::new(Hierarchy::Unified, path)
        .lineage()
        .into_iter()
        .filter(|g| !g.is_root())
        .filter_map(|g| {
            let file = cg.mounts.dir(&g).ok()?.join("cpuset.cpus");
            let cpus = fs::read_to_string(&file).ok()?;
            let cpus = cpus.trim();
            (!cpus.is_empty()).then(|| SystemdSetting {
                source: file.clone(),
                setting: format!("AllowedCPUs={cpus} (as written in the cgroup)"),
            })
        })
        .collect()
}

/// Slurm's own groups (`slurm`, `slurm_<node>`) are left out.
fn is_slurms(name: &str) -> bool {
    name == "slurm" || name.starts_with("slurm_")
}

/// Cpuset groups (v1, or v2 with the cpuset controller) other than the root
/// and Slurm's own that hold processes.
pub fn occupied(cg: &Cgroups) -> Vec<OccupiedGroup> {
    let hierarchy = if cg.mounts.cpuset_v1.is_some() {
        Hierarchy::CpusetV1
    } else if cg.mounts.v2_has_cpuset() {
        Hierarchy::Unified
    } else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(cg, &Group::new(hierarchy, "/"), 0, &mut out);
    out
}

fn walk(cg: &Cgroups, group: &Group, depth: usize, out: &mut Vec<OccupiedGroup>) {
    if depth > MAX_DEPTH || out.len() >= MAX_OCCUPIED {
        return;
    }
    let Ok(dir) = cg.mounts.dir(group) else {
        return;
    };
    let mut children: Vec<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| !(depth == 0 && is_slurms(n)))
        .collect();
    children.sort();
    for name in children {
        let child = group.child(&name);
        let processes = cg.processes(&child).map_or(0, |p| p.len());
        if processes > 0 {
            if let Ok(state) = cg.cpuset(&child) {
                out.push(OccupiedGroup {
                    group: child.clone(),
                    cpus: state.effective_cpus,
                    mems: state.effective_mems,
                    processes,
                });
            }
        }
        walk(cg, &child, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::testfs::{v1_cpuset, v1_mounts};

    #[test]
    fn occupied_cpusets_skip_slurms_own_and_empty_groups() {
        let dir = tempfile::tempdir().unwrap();
        let m = v1_mounts(dir.path());
        v1_cpuset(&m, "/", "0-3", "0");
        v1_cpuset(&m, "/users", "0", "0");
        v1_cpuset(&m, "/users/alice", "0", "0");
        v1_cpuset(&m, "/idle", "1", "0");
        v1_cpuset(&m, "/slurm_n1", "0-3", "0");
        v1_cpuset(&m, "/slurm_n1/uid_1", "2", "0");
        let procs = |p: &str| {
            m.dir(&Group::new(Hierarchy::CpusetV1, p))
                .unwrap()
                .join("cgroup.procs")
        };
        fs::write(procs("/users/alice"), "10\n11\n").unwrap();
        fs::write(procs("/slurm_n1/uid_1"), "12\n").unwrap();
        let found = occupied(&Cgroups::new(m));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].group.path, "/users/alice");
        assert_eq!(found[0].processes, 2);
        assert_eq!(found[0].cpus, CpuSet::parse("0").unwrap());
    }

    #[test]
    fn systemd_cpu_settings_are_found_in_units_and_dropins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/systemd/system/slurmd.service.d")).unwrap();
        fs::write(
            root.join("etc/systemd/system/slurmd.service.d/cpus.conf"),
            "[Service]\nAllowedCPUs=0-3\nNice=1\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/systemd/system/slurmd.service.d/ignored.txt"),
            "AllowedCPUs=9\n",
        )
        .unwrap();
        let found = systemd_settings(root);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].setting, "AllowedCPUs=0-3");
    }

    #[test]
    fn only_cpu_rules_are_kept_and_a_socket_alone_is_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("cgrules.conf");
        fs::write(
            &rules,
            "alice cpuset users/\nbob memory big/\n@staff * staff/\n",
        )
        .unwrap();
        let mut sources = Sources::of_this_system();
        sources.cgrules = rules;
        sources.cgred_socket = dir.path().join("no.socket");
        let view = cgrules(&sources);
        let users: Vec<&str> = view.rules.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(users, vec!["alice", "@staff"]);
        assert_eq!(view.socket_state, SocketState::Absent);
    }
}
