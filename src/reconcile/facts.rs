//! Gathering: what constrains a step's processes on this node, read from
//! /proc, the cgroup trees and /etc; no decisions here.
//!
//! The same function serves slurmstepd (for its own pid, before any task is
//! forked) and `berth doctor` (for a given user and allocation, as a dry run).

use std::path::{Path, PathBuf};

use crate::cgroup::rules::{self, Destination, Identity};
use crate::cgroup::{
    cgconfig, cgred, CgroupError, Cgroups, CpusetState, Group, Hierarchy, Membership, Mounts,
};
use crate::cpuset::CpuSet;
use crate::topology::{Topology, TopologyError};

use super::process;

/// Where gathering looks (real paths by default; temp dirs in tests).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sources {
    pub mounts: Mounts,
    pub cgrules: PathBuf,
    pub cgconfig: PathBuf,
    pub cgconfig_d: PathBuf,
    pub cgred_socket: PathBuf,
}

impl Sources {
    pub fn of_this_system() -> Sources {
        Sources {
            mounts: Mounts::of_this_system(),
            cgrules: "/etc/cgrules.conf".into(),
            cgconfig: "/etc/cgconfig.conf".into(),
            cgconfig_d: "/etc/cgconfig.d".into(),
            cgred_socket: cgred::SOCKET.into(),
        }
    }
}

/// A process's placement: where slurmstepd (or the process `doctor` looks at) is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub pid: i32,
    pub cpuset_group: Option<Group>,
    pub cpuset: Option<CpusetState>,
    pub cpu_group: Option<Group>,
    /// The process's CPU affinity (inherited by the tasks it forks).
    pub affinity: CpuSet,
}

/// A cgrules.conf rule that will move the job user's processes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleFacts {
    /// The rule's destination in the cpuset hierarchy.
    pub cpuset: Option<Destination>,
    /// Its cpuset, when the group exists.
    pub cpuset_state: Option<CpusetState>,
    /// The rule's destination in the cpu hierarchy, if it names cpu.
    pub cpu: Option<Destination>,
    /// Whether cgrulesengd's socket exists (the daemon runs).
    pub daemon: bool,
}

/// Everything the planner needs, serializable for `berth doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    pub node_cpus: CpuSet,
    pub node_mems: CpuSet,
    pub mounts: Mounts,
    pub placement: Placement,
    pub user: Identity,
    pub rule: Option<RuleFacts>,
    /// The cpu weight cgconfig gives each group berth may weigh (by path).
    pub configured_weights: std::collections::BTreeMap<String, u64>,
    /// The live weight of those groups in the cpu hierarchy, where they exist.
    pub live_weights: std::collections::BTreeMap<String, u64>,
}

/// The step's allocation on this node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    /// Slurm's abstract core indices (S_STEP_ALLOC_CORES).
    pub cores: CpuSet,
    /// Every hardware thread of those cores.
    pub cpus: CpuSet,
    /// The NUMA nodes of those CPUs.
    pub mems: CpuSet,
}

impl Allocation {
    pub fn resolve(cores: &CpuSet, topology: &Topology) -> Result<Allocation, TopologyError> {
        let cpus = topology.cpus_of_cores(cores)?;
        let mems = topology.mems_of(&cpus);
        Ok(Allocation {
            cores: cores.clone(),
            cpus,
            mems,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Rules(#[from] rules::RulesError),
    #[error("cannot read the affinity of pid {pid}: {error}")]
    Affinity { pid: i32, error: std::io::Error },
    #[error("cannot read {path}: {error}")]
    Sysfs { path: String, error: String },
}

fn sysfs_set(path: &str) -> Result<CpuSet, FactsError> {
    let text = std::fs::read_to_string(path).map_err(|e| FactsError::Sysfs {
        path: path.into(),
        error: e.to_string(),
    })?;
    CpuSet::parse(&text).map_err(|e| FactsError::Sysfs {
        path: path.into(),
        error: e.to_string(),
    })
}

/// The online CPUs and memory nodes of this machine.
pub fn node_resources() -> Result<(CpuSet, CpuSet), FactsError> {
    let cpus = sysfs_set("/sys/devices/system/cpu/online")?;
    let mems = if Path::new("/sys/devices/system/node/online").exists() {
        sysfs_set("/sys/devices/system/node/online")?
    } else {
        CpuSet::parse("0").unwrap_or_default()
    };
    Ok((cpus, mems))
}

/// Where process `pid` is, in the trees under `mounts`.
pub fn placement(
    cg: &Cgroups,
    membership: &Membership,
    pid: i32,
    affinity: CpuSet,
) -> Result<Placement, FactsError> {
    let cpuset_group = membership.cpuset_group(&cg.mounts);
    let cpuset = match &cpuset_group {
        Some(g) => Some(cg.cpuset(g)?),
        None => None,
    };
    Ok(Placement {
        pid,
        cpuset_group,
        cpuset,
        cpu_group: membership.cpu_group(&cg.mounts),
        affinity,
    })
}

/// What the cgrules.conf rules do to this user, if any rule concerns the
/// cpuset or cpu controller.
pub fn rule_facts(
    cg: &Cgroups,
    sources: &Sources,
    user: &Identity,
) -> Result<Option<RuleFacts>, FactsError> {
    let rules = rules::read(&sources.cgrules)?;
    if rules.is_empty() {
        return Ok(None);
    }
    let cpuset = rules::destination(&rules, user, "cpuset");
    let cpu = rules::destination(&rules, user, "cpu");
    if cpuset.is_none() && cpu.is_none() {
        return Ok(None);
    }
    let hierarchy = if cg.mounts.cpuset_v1.is_some() {
        Hierarchy::CpusetV1
    } else {
        Hierarchy::Unified
    };
    let cpuset_state = match &cpuset {
        Some(d) if !d.per_process => {
            let g = Group::new(hierarchy, &d.path);
            if cg.exists(&g) {
                Some(cg.cpuset(&g)?)
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(Some(RuleFacts {
        cpuset,
        cpuset_state,
        cpu,
        daemon: cgred::socket_present(&sources.cgred_socket),
    }))
}

/// Gathers the facts for process `pid` of `user` (slurmstepd passes its own).
pub fn gather(sources: &Sources, pid: i32, user: Identity) -> Result<Facts, FactsError> {
    let cg = Cgroups::new(sources.mounts.clone());
    let (node_cpus, node_mems) = node_resources()?;
    let membership = Membership::of_pid(pid)?;
    let affinity = process::affinity(pid).map_err(|error| FactsError::Affinity { pid, error })?;
    let placement = placement(&cg, &membership, pid, affinity)?;
    let rule = rule_facts(&cg, sources, &user)?;
    let mut facts = Facts {
        node_cpus,
        node_mems,
        mounts: sources.mounts.clone(),
        placement,
        user,
        rule,
        configured_weights: Default::default(),
        live_weights: Default::default(),
    };
    add_weights(&mut facts, &cg, sources);
    Ok(facts)
}

/// The weights of the groups the planner may put processes in for the cpu
/// controller: the external cpusets' paths.
fn add_weights(facts: &mut Facts, cg: &Cgroups, sources: &Sources) {
    let mut paths = Vec::new();
    if let Some(g) = &facts.placement.cpuset_group {
        if !g.is_root() {
            paths.push(g.path.clone());
        }
    }
    if let Some(r) = &facts.rule {
        for d in [&r.cpuset, &r.cpu].into_iter().flatten() {
            paths.push(d.path.clone());
        }
    }
    if paths.is_empty() {
        return;
    }
    let groups = cgconfig::read(&sources.cgconfig, &sources.cgconfig_d);
    let cpu_hierarchy = if cg.mounts.cpu_v1.is_some() {
        Hierarchy::CpuV1
    } else {
        Hierarchy::Unified
    };
    for p in paths {
        if let Some(w) = cgconfig::configured_weight(&groups, &p) {
            facts.configured_weights.insert(p.clone(), w);
        }
        let g = Group::new(cpu_hierarchy, &p);
        if let Ok(w) = cg.weight(&g) {
            facts.live_weights.insert(p, w);
        }
    }
}

impl Facts {
    /// Nothing outside Slurm narrows this process: its cpuset, memory nodes
    /// and affinity span the node and no cgrules rule will move it. Then no
    /// allocation can conflict and the topology need not be loaded.
    pub fn unconstrained(&self) -> bool {
        let cpuset_full = self.placement.cpuset.as_ref().is_none_or(|c| {
            self.node_cpus.is_subset(&c.effective_cpus)
                && self.node_mems.is_subset(&c.effective_mems)
        });
        let rule_idle = self.rule.as_ref().is_none_or(|r| !r.daemon);
        cpuset_full && self.node_cpus.is_subset(&self.placement.affinity) && rule_idle
    }
}
