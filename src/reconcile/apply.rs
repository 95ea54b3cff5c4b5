//! Doing a plan, recording what was done, and undoing it at the step's end.

use std::path::PathBuf;

use crate::cgroup::cgred::{self, Outcome, Request};
use crate::cgroup::{CgroupError, Cgroups, Group, Membership};
use crate::cpuset::CpuSet;

use super::plan::{Action, Plan};
use super::process;
use super::registry::{Holder, Registry, RegistryError};

/// Where applying acts.
pub struct Target<'a> {
    pub cgroups: &'a Cgroups,
    pub registry: &'a Registry,
    pub cgred_socket: PathBuf,
    /// slurmstepd's pid.
    pub pid: i32,
}

/// What one step changed, for undo (serializable, for the debug log).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// Task ids registered with cgrulesengd.
    pub registered: Vec<i32>,
    /// The cpu group slurmstepd was in before berth moved it.
    pub original_cpu_group: Option<Group>,
    /// The registry holder, when shared changes were made.
    pub holder: Option<Holder>,
    /// The cpuset group slurmstepd is in after applying (to return to if
    /// cgrulesengd moves it anyway).
    pub home: Option<Group>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cgred(#[from] cgred::CgredError),
    #[error("cannot set the CPU affinity of thread {tid} to {cpus}: {error}")]
    Affinity {
        tid: i32,
        cpus: CpuSet,
        error: std::io::Error,
    },
    #[error("cannot read slurmstepd's start time")]
    NoStartTime,
}

/// Registers every current thread of `pid` (and their future children).
fn register_threads(t: &Target<'_>, applied: &mut Applied) -> Result<(), ApplyError> {
    for tid in process::threads(t.pid) {
        if applied.registered.contains(&tid) {
            continue;
        }
        match cgred::request(&t.cgred_socket, tid, Request::UnchangedWithChildren)? {
            Outcome::Stored => applied.registered.push(tid),
            Outcome::NoReply => {}
            Outcome::NoDaemon | Outcome::StaleSocket => return Ok(()),
        }
    }
    Ok(())
}

fn reset_affinity(pid: i32, cpus: &CpuSet) -> Result<(), ApplyError> {
    for tid in process::threads(pid) {
        process::set_affinity(tid, cpus).map_err(|error| ApplyError::Affinity {
            tid,
            cpus: cpus.clone(),
            error,
        })?;
    }
    Ok(())
}

fn holder(applied: &mut Applied) -> Result<Holder, ApplyError> {
    if let Some(h) = applied.holder {
        return Ok(h);
    }
    let h = Holder::this_process().ok_or(ApplyError::NoStartTime)?;
    applied.holder = Some(h);
    Ok(h)
}

fn do_action(t: &Target<'_>, action: &Action, applied: &mut Applied) -> Result<(), ApplyError> {
    let cg = t.cgroups;
    match action {
        Action::RegisterWithCgred => register_threads(t, applied)?,
        Action::Widen { group, cpus, mems } => {
            let h = holder(applied)?;
            let union = |add: &CpuSet| {
                let add = add.clone();
                move |cur: &str| {
                    CpuSet::parse(cur)
                        .unwrap_or_default()
                        .union(&add)
                        .to_string()
                }
            };
            let (cpus_file, mems_file) = ("cpuset.cpus", "cpuset.mems");
            // mems first: a v1 cpuset with CPUs and no memory node is invalid
            t.registry.with(cg, |s| {
                s.set_file(cg, h, group, mems_file, union(mems))?;
                s.set_file(cg, h, group, cpus_file, union(cpus))
            })?;
        }
        Action::MoveToCpuset { group } => cg.move_process(group, t.pid)?,
        Action::JoinCpuGroup {
            group,
            create,
            weight,
        } => {
            let h = holder(applied)?;
            if applied.original_cpu_group.is_none() {
                applied.original_cpu_group = Membership::of_pid(t.pid)?.cpu_group(&cg.mounts);
            }
            t.registry.with(cg, |s| {
                if *create {
                    s.create_group(cg, h, group)?;
                }
                if let Some(w) = weight {
                    let (file, _) = Cgroups::weight_file(group);
                    s.set_file(cg, h, group, file, |_| w.to_string())?;
                }
                Ok(())
            })?;
            cg.move_process(group, t.pid)?;
        }
        Action::ResetAffinity { cpus } => reset_affinity(t.pid, cpus)?,
    }
    Ok(())
}

/// Applies the plan's actions in order; on failure undoes what was done.
pub fn apply(t: &Target<'_>, plan: &Plan) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    for action in &plan.actions {
        if let Err(e) = do_action(t, action, &mut applied) {
            undo(t, &applied);
            return Err(e);
        }
    }
    applied.home = Membership::of_pid(t.pid)
        .ok()
        .and_then(|m| m.cpuset_group(&t.cgroups.mounts));
    Ok(applied)
}

/// In user_init (threads created since init, e.g. slurmstepd's IO thread, are
/// not covered by the registration): registers the new threads, and if
/// cgrulesengd already moved slurmstepd into a forbidden group, moves it back
/// and resets its affinity. Returns what was repaired, if anything.
pub fn protect_new_threads(
    t: &Target<'_>,
    plan: &Plan,
    applied: &mut Applied,
) -> Result<Option<String>, ApplyError> {
    if plan.actions.contains(&Action::RegisterWithCgred) {
        register_threads(t, applied)?;
    }
    let Some(home) = applied.home.clone() else {
        return Ok(None);
    };
    let now = Membership::of_pid(t.pid)?.cpuset_group(&t.cgroups.mounts);
    match now {
        Some(g) if plan.forbidden.contains(&g) => {
            t.cgroups.move_process(&home, t.pid)?;
            let cpus = t.cgroups.cpuset(&home)?.effective_cpus;
            reset_affinity(t.pid, &cpus)?;
            Ok(Some(format!(
                "slurmstepd was moved to {g}; moved it back to {home}"
            )))
        }
        _ => Ok(None),
    }
}

/// In task_post_fork (parent, root, after Slurm bound the task and before it
/// is released): a task found in a forbidden group goes back to
/// slurmstepd's group; an affinity outside the allocation is clipped to it.
pub fn verify_task(
    t: &Target<'_>,
    plan: &Plan,
    task_pid: i32,
) -> Result<Option<String>, ApplyError> {
    let mut repairs = Vec::new();
    let mounts = &t.cgroups.mounts;
    let task_group = Membership::of_pid(task_pid)?.cpuset_group(mounts);
    if let Some(g) = task_group.filter(|g| plan.forbidden.contains(g)) {
        let stepd_group = Membership::of_pid(t.pid)?.cpuset_group(mounts);
        if let Some(home) = stepd_group.filter(|h| !plan.forbidden.contains(h)) {
            t.cgroups.move_process(&home, task_pid)?;
            repairs.push(format!("task pid {task_pid} was in {g}: moved to {home}"));
        }
    }
    let affinity = process::affinity(task_pid).map_err(|error| ApplyError::Affinity {
        tid: task_pid,
        cpus: CpuSet::new(),
        error,
    })?;
    if !affinity.is_subset(&plan.allowed_cpus) {
        let cpus = affinity.intersection(&plan.allowed_cpus);
        let cpus = if cpus.is_empty() {
            plan.allowed_cpus.clone()
        } else {
            cpus
        };
        for tid in process::threads(task_pid) {
            process::set_affinity(tid, &cpus).map_err(|error| ApplyError::Affinity {
                tid,
                cpus: cpus.clone(),
                error,
            })?;
        }
        repairs.push(format!(
            "task pid {task_pid} had CPUs {affinity}: set to {cpus}"
        ));
    }
    Ok((!repairs.is_empty()).then(|| repairs.join("; ")))
}

/// Undoes a step's changes: back to the original cpu group, shared changes
/// released (the last step restores them), registrations removed.
pub fn undo(t: &Target<'_>, applied: &Applied) {
    if let Some(g) = &applied.original_cpu_group {
        if let Err(e) = t.cgroups.move_process(g, t.pid) {
            log::warn!("cannot move slurmstepd back to {g}: {e}");
        }
    }
    if let Some(h) = applied.holder {
        if let Err(e) = t.registry.with(t.cgroups, |s| {
            s.release(t.cgroups, h);
            Ok(())
        }) {
            log::warn!("cannot release the step's cgroup changes: {e}");
        }
    }
    for &tid in &applied.registered {
        if let Err(e) = cgred::request(&t.cgred_socket, tid, Request::Remove) {
            log::debug!("{e}");
        }
    }
}
