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
use super::registry::{Resource, State};

/// cgrulesengd's rules.
pub const CGRULES_CONF: &str = "/etc/cgrules.conf";

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
    /// As `of_this_system`, but on the usual v1 layout without reading
    /// mountinfo (slurmstepd, once per step).
    pub fn for_a_step() -> Sources {
        let mut sources = Sources::of(Mounts::usual_v1);
        if sources.mounts == Mounts::default() {
            sources.mounts = Mounts::of_this_system();
        }
        sources
    }

    pub fn of_this_system() -> Sources {
        Sources::of(|| Some(Mounts::of_this_system()))
    }

    fn of(mounts: impl FnOnce() -> Option<Mounts>) -> Sources {
        Sources {
            mounts: mounts().unwrap_or_default(),
            cgrules: CGRULES_CONF.into(),
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
    /// Whether cgrulesengd listens on its socket (a socket file alone may be
    /// left over by a daemon that died).
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
    rule_facts_for(cg, sources, &mut || user.clone())
}

/// `rule_facts` with the user's names looked up only when there are rules (a
/// lookup through NSS costs about 0.4 ms in slurmstepd).
fn rule_facts_for(
    cg: &Cgroups,
    sources: &Sources,
    user: &mut dyn FnMut() -> Identity,
) -> Result<Option<RuleFacts>, FactsError> {
    let rules = rules::read(&sources.cgrules)?;
    if rules.is_empty() {
        return Ok(None);
    }
    let user = user();
    let cpuset = rules::destination(&rules, &user, "cpuset");
    let cpu = rules::destination(&rules, &user, "cpu");
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
        daemon: cgred::socket_state(&sources.cgred_socket) == cgred::SocketState::Listening,
    }))
}

/// A cheap first look (no mountinfo, no user lookup): `pid` is in the root
/// cpuset, its affinity spans the node and no running cgrulesengd has rules.
/// Then nothing outside Slurm constrains it, which is the common case on a node
/// and must cost next to nothing per step. `false` means "look properly".
pub fn plainly_unconstrained(cgrules: &Path, cgred_socket: &Path, pid: i32) -> bool {
    let Ok(membership) = Membership::of_pid(pid) else {
        return false;
    };
    let in_root = match (&membership.cpuset_v1, &membership.unified) {
        (Some(v1), _) => v1 == "/",
        (None, Some(v2)) => v2 == "/",
        (None, None) => true,
    };
    if !in_root {
        return false;
    }
    let (Ok((cpus, _)), Ok(affinity)) = (node_resources(), process::affinity(pid)) else {
        return false;
    };
    if !cpus.is_subset(&affinity) {
        return false;
    }
    cgred::socket_state(cgred_socket) != cgred::SocketState::Listening
        || rules::read(cgrules).is_ok_and(|r| r.is_empty())
}

/// Gathers the facts for process `pid` of `user` (slurmstepd passes its own).
pub fn gather(sources: &Sources, pid: i32, user: Identity) -> Result<Facts, FactsError> {
    let known = user.clone();
    gather_lazily(sources, pid, user.uid, user.gid, move |_, _| known.clone())
}

/// `gather` for a user known by uid and gid: `identity` (e.g.
/// `process::identity`) runs only when cgrules.conf has rules; `Facts::user`
/// then holds the numbers as names.
pub fn gather_lazily(
    sources: &Sources,
    pid: i32,
    uid: u32,
    gid: u32,
    identity: impl Fn(u32, u32) -> Identity,
) -> Result<Facts, FactsError> {
    let cg = Cgroups::new(sources.mounts.clone());
    let (node_cpus, node_mems) = node_resources()?;
    let membership = Membership::of_pid(pid)?;
    let affinity = process::affinity(pid).map_err(|error| FactsError::Affinity { pid, error })?;
    let placement = placement(&cg, &membership, pid, affinity)?;
    let mut user = None;
    let rule = rule_facts_for(&cg, sources, &mut || {
        user.get_or_insert_with(|| identity(uid, gid)).clone()
    })?;
    let user = user.unwrap_or_else(|| Identity {
        uid,
        user: uid.to_string(),
        gid,
        group: gid.to_string(),
        groups: Vec::new(),
    });
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
    /// Sees through the changes other steps made and still hold (berth's registry):
    /// a cpuset berth widened counts with the CPUs and memory nodes the site gave
    /// it, and a cpu group berth created counts as absent. So a step that runs on
    /// another step's widening takes its own hold on it (and is not left in a
    /// narrowed cpuset when that step ends), and a step that joins a weight group
    /// another step made holds it too.
    pub fn without_berths_changes(&mut self, recorded: &State) {
        let original = |group: &Group, file: &str| {
            recorded.entries.iter().find_map(|e| match &e.resource {
                Resource::File { group: g, file: f } if g == group && f == file => {
                    e.original.as_deref().and_then(|v| CpuSet::parse(v).ok())
                }
                _ => None,
            })
        };
        let see_through = |group: &Group, state: &mut CpusetState| {
            if let Some(cpus) = original(group, "cpuset.cpus") {
                state.effective_cpus = state.effective_cpus.intersection(&cpus);
                state.cpus = cpus;
            }
            if let Some(mems) = original(group, "cpuset.mems") {
                state.effective_mems = state.effective_mems.intersection(&mems);
                state.mems = mems;
            }
        };
        if let (Some(g), Some(state)) = (
            self.placement.cpuset_group.as_ref(),
            self.placement.cpuset.as_mut(),
        ) {
            see_through(g, state);
        }
        if let Some(rule) = self.rule.as_mut() {
            if let (Some(dest), Some(state)) = (rule.cpuset.as_ref(), rule.cpuset_state.as_mut()) {
                let hierarchy = self
                    .placement
                    .cpuset_group
                    .as_ref()
                    .map_or(Hierarchy::CpusetV1, |g| g.hierarchy);
                see_through(&Group::new(hierarchy, &dest.path), state);
            }
        }
        for e in &recorded.entries {
            if let Resource::Created { group } = &e.resource {
                self.live_weights.remove(&group.path);
            }
        }
    }

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
