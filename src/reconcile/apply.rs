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
        let started = std::time::Instant::now();
        let outcome = do_action(t, action, &mut applied);
        log::trace!(
            "reconcile: {} took {} us",
            action.describe(),
            started.elapsed().as_micros()
        );
        if let Err(e) = outcome {
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

/// A task as task_post_fork sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    pub pid: i32,
    /// Slurm's global task id (S_TASK_GLOBAL_ID), if Slurm gave it.
    pub global_id: Option<u32>,
}

/// Where a task found in a forbidden cpuset goes back to: the group Slurm put it in.
///
/// With task/cgroup (cgroup v1), Slurm up to 24.11.2 puts each task in the step's
/// group, where slurmstepd itself is (`.../step_S`); from 24.11.3 on, in a group of
/// its own below it, `.../step_S/task_<id>`, which it makes and moves the task into
/// in `task_g_pre_launch_priv`, before SPANK's task_post_fork (Slurm's
/// `_handle_task_cgroup`). With task/affinity alone the task stays in slurmstepd's
/// group, which is not a step group.
///
/// `<id>` is the global task id plus a heterogeneous step's task offset, which SPANK
/// does not give; so the task's own group is taken only if it is vacant (`vacant`:
/// exists and holds no process): a `task_<global id>` that holds a process is an
/// earlier task's (tasks are placed in order), and the task then goes to the step's
/// group, as on Slurm before 24.11.3.
pub fn task_home(
    stepd_group: &Group,
    global_id: Option<u32>,
    vacant: impl Fn(&Group) -> bool,
) -> Group {
    let in_step_group = stepd_group
        .path
        .rsplit('/')
        .next()
        .is_some_and(|leaf| leaf.starts_with("step_"));
    global_id
        .filter(|_| in_step_group)
        .map(|id| stepd_group.child(&format!("task_{id}")))
        .filter(|g| vacant(g))
        .unwrap_or_else(|| stepd_group.clone())
}

/// In task_post_fork (parent, root, after Slurm placed and bound the task and
/// before it is released): a task found in a forbidden group goes back to the
/// group Slurm put it in (see [`task_home`]); an affinity outside the allocation
/// is clipped to it.
pub fn verify_task(t: &Target<'_>, plan: &Plan, task: Task) -> Result<Option<String>, ApplyError> {
    let task_pid = task.pid;
    let mut repairs = Vec::new();
    let mounts = &t.cgroups.mounts;
    let task_group = Membership::of_pid(task_pid)?.cpuset_group(mounts);
    if let Some(g) = task_group.filter(|g| plan.forbidden.contains(g)) {
        let stepd_group = Membership::of_pid(t.pid)?.cpuset_group(mounts);
        if let Some(stepd_group) = stepd_group.filter(|h| !plan.forbidden.contains(h)) {
            let home = task_home(&stepd_group, task.global_id, |g| t.cgroups.is_vacant(g));
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
    let started = std::time::Instant::now();
    if let Some(g) = &applied.original_cpu_group {
        if let Err(e) = t.cgroups.move_process(g, t.pid) {
            log::warn!("cannot move slurmstepd back to {g}: {e}");
        }
    }
    log::trace!(
        "reconcile: moving back to the cpu group took {} us",
        started.elapsed().as_micros()
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::testfs;
    use crate::cgroup::Hierarchy;

    const STEP: &str = "/slurm_n1/uid_1000/job_5/step_0";

    fn cpuset(path: &str) -> Group {
        Group::new(Hierarchy::CpusetV1, path)
    }

    /// A v1 tree with Slurm's step group; `tasks`: its per-task groups (name, pids).
    fn tree(tasks: &[(&str, &str)]) -> (tempfile::TempDir, Cgroups) {
        let dir = tempfile::tempdir().unwrap();
        let mounts = testfs::v1_mounts(dir.path());
        testfs::v1_cpuset(&mounts, STEP, "0-1", "0");
        for (name, pids) in tasks {
            let path = format!("{STEP}/{name}");
            testfs::v1_cpuset(&mounts, &path, "0-1", "0");
            let procs = mounts.dir(&cpuset(&path)).unwrap().join("cgroup.procs");
            std::fs::write(procs, pids).unwrap();
        }
        (dir, Cgroups::new(mounts))
    }

    fn home(cg: &Cgroups, stepd: &str, id: Option<u32>) -> Group {
        task_home(&cpuset(stepd), id, |g| cg.is_vacant(g))
    }

    #[test]
    fn a_task_goes_back_to_its_own_group_when_slurm_made_one() {
        // Slurm >= 24.11.3: task 1's group made, task 0 already in its own.
        let (_dir, cg) = tree(&[("task_0", "100\n"), ("task_1", "")]);
        assert_eq!(home(&cg, STEP, Some(1)), cpuset(&format!("{STEP}/task_1")));
    }

    #[test]
    fn a_task_goes_back_to_the_step_group_when_slurm_made_none() {
        // Slurm 22.05 .. 24.11.2: tasks live in the step group, with slurmstepd.
        let (_dir, cg) = tree(&[]);
        assert_eq!(home(&cg, STEP, Some(0)), cpuset(STEP));
        assert_eq!(home(&cg, STEP, None), cpuset(STEP));
    }

    #[test]
    fn another_tasks_group_is_not_taken() {
        // A heterogeneous step with task offset 1: task 1's group holds task 0.
        let (_dir, cg) = tree(&[("task_1", "100\n"), ("task_2", "")]);
        assert_eq!(home(&cg, STEP, Some(1)), cpuset(STEP));
    }

    #[test]
    fn outside_a_step_group_the_task_goes_to_slurmstepds_group() {
        // task/affinity alone: slurmstepd in the root cpuset (moved there by berth);
        // a vacant /task_0 there is not Slurm's.
        let (_dir, cg) = tree(&[]);
        let dir = cg.mounts.dir(&cpuset("/")).unwrap();
        testfs::v1_cpuset(&cg.mounts, "/task_0", "0-1", "0");
        assert!(dir.join("task_0").is_dir());
        assert_eq!(home(&cg, "/", Some(0)), cpuset("/"));
    }

    #[test]
    fn batch_and_extern_steps_are_step_groups_too() {
        let (_dir, cg) = tree(&[]);
        let batch = "/slurm_n1/uid_1000/job_5/step_batch";
        testfs::v1_cpuset(&cg.mounts, batch, "0-1", "0");
        testfs::v1_cpuset(&cg.mounts, &format!("{batch}/task_0"), "0-1", "0");
        assert_eq!(
            home(&cg, batch, Some(0)),
            cpuset(&format!("{batch}/task_0"))
        );
    }
}
