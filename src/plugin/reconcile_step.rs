//! slurmstepd side of cpuset reconciliation (see `crate::reconcile`).
//!
//! Everything that must precede Slurm's binding happens in slurmstepd before
//! any task is forked (shared notes, slurm.md):
//! - init (root, before task/cgroup's pre_setuid and the fork): gather facts,
//!   plan, apply (move out of / widen the external cpuset, register with
//!   cgrulesengd, reset the remembered affinity), log the one line;
//! - user_init (ruid 0, euid user, before the fork): register threads created
//!   since init (the IO thread), undo a move cgrulesengd already made; a
//!   strict refusal fails the step here, where the message reaches srun;
//! - task_post_fork (parent, root, after Slurm placed and bound the task, before
//!   release): verify and repair the task's cpuset (back to the group Slurm put it
//!   in, its own `task_K` group on 24.11.3+) and affinity;
//! - exit: undo (also after scancel, which ends the step normally).

use std::time::Instant;

use super::PluginError;
use crate::cgroup::Cgroups;
use crate::config::{Config, CpusetPolicy};
use crate::cpuset::CpuSet;
use crate::reconcile::apply::{self, Applied, Target};
use crate::reconcile::facts::{self, Allocation, Facts, Sources};
use crate::reconcile::plan::{self, Plan};
use crate::reconcile::process;
use crate::reconcile::registry::Registry;
use crate::spank::{Hook, Spank};
use crate::topology::Topology;

/// What reconciliation keeps about the step between hooks.
#[derive(Default)]
pub(crate) struct ReconcileState {
    plan: Option<Plan>,
    applied: Option<Applied>,
    sources: Option<Sources>,
    /// The step's one decision line (also shown by `srun -v`, see `verbose`).
    pub decision: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read this node's cpuset constraints: {0}")]
    Facts(#[from] facts::FactsError),
    #[error("cannot map the step's cores to CPUs: {0}")]
    Topology(#[from] crate::topology::TopologyError),
    #[error("Slurm gave an unreadable core list: {0}")]
    Cores(#[from] crate::cpuset::ParseError),
    #[error(transparent)]
    Spank(#[from] crate::spank::SpankError),
    #[error("cannot reconcile the step with the external cpuset: {0}")]
    Apply(#[from] apply::ApplyError),
}

pub(super) fn on_hook(
    hook: Hook,
    spank: &mut dyn Spank,
    config: &Config,
    state: &mut ReconcileState,
) -> Result<(), PluginError> {
    if config.cpuset_policy == CpusetPolicy::Off {
        return Ok(());
    }
    let started = Instant::now();
    let outcome = match hook {
        Hook::Init => init(spank, config, state),
        Hook::UserInit => user_init(config, state),
        Hook::TaskPostFork => task_post_fork(spank, config, state),
        Hook::Exit => exit(config, state),
        _ => return Ok(()),
    };
    log::trace!(
        "reconcile: {} took {} us",
        hook.name(),
        started.elapsed().as_micros()
    );
    outcome
}

fn target<'a>(cgroups: &'a Cgroups, registry: &'a Registry, sources: &Sources) -> Target<'a> {
    Target {
        cgroups,
        registry,
        cgred_socket: sources.cgred_socket.clone(),
        pid: std::process::id() as i32,
    }
}

fn init(
    spank: &mut dyn Spank,
    config: &Config,
    state: &mut ReconcileState,
) -> Result<(), PluginError> {
    let started = Instant::now();
    let pid = std::process::id() as i32;
    let socket = std::path::Path::new(crate::cgroup::cgred::SOCKET);
    if facts::plainly_unconstrained(facts::CGRULES_CONF.as_ref(), socket, pid) {
        let line = "no external cpuset constraint".to_string();
        log::trace!("{line} (checked in {} us)", started.elapsed().as_micros());
        state.decision = Some(line);
        return Ok(());
    }
    let sources = Sources::for_a_step();
    let facts = gather_facts(spank, config, &sources)?;
    log::trace!(
        "reconcile: gathering facts took {} us",
        started.elapsed().as_micros()
    );
    if facts.unconstrained() {
        let line = "no external cpuset constraint".to_string();
        log::trace!("{line}");
        state.decision = Some(line);
        return Ok(());
    }
    let started = Instant::now();
    let alloc = allocation(spank, config)?;
    log::trace!(
        "reconcile: the allocation's CPUs took {} us",
        started.elapsed().as_micros()
    );
    let plan = plan::plan(&facts, &alloc, config.cpuset_policy);
    let line = plan.summary(&alloc);
    if plan.is_noop() {
        log::trace!("{line}");
        state.decision = Some(line);
        return Ok(());
    }
    if plan.refusal.is_none() {
        let applied = apply_plan(&plan, config, &sources)?;
        log::info!("{line}");
        state.applied = Some(applied);
    }
    state.decision = Some(line);
    state.plan = Some(plan);
    state.sources = Some(sources);
    Ok(())
}

/// The facts about slurmstepd, seen through the changes other steps hold (a cpuset
/// another step widened still counts as narrow: this step must hold it too).
fn gather_facts(
    spank: &dyn Spank,
    config: &Config,
    sources: &Sources,
) -> Result<Facts, ReconcileError> {
    let pid = std::process::id() as i32;
    let mut facts =
        facts::gather_lazily(sources, pid, spank.uid()?, spank.gid()?, process::identity)?;
    facts.without_berths_changes(&Registry::new(&config.run_dir).snapshot());
    Ok(facts)
}

/// The step's cores (the job's for steps without their own, e.g. extern),
/// mapped through the node's topology.
fn allocation(spank: &dyn Spank, config: &Config) -> Result<Allocation, ReconcileError> {
    let cores = match spank.step_alloc_cores() {
        Ok(c) if !c.trim().is_empty() => c,
        _ => spank.job_alloc_cores()?,
    };
    let cores = CpuSet::parse(&cores)?;
    let (topology, origin) = Topology::load(config.topology_cache.as_deref())?;
    log::trace!("topology from {origin:?}");
    Ok(Allocation::resolve(&cores, &topology)?)
}

fn apply_plan(plan: &Plan, config: &Config, sources: &Sources) -> Result<Applied, ReconcileError> {
    let cgroups = Cgroups::new(sources.mounts.clone());
    let registry = Registry::new(&config.run_dir);
    Ok(apply::apply(&target(&cgroups, &registry, sources), plan)?)
}

fn user_init(config: &Config, state: &mut ReconcileState) -> Result<(), PluginError> {
    let (Some(plan), Some(sources)) = (&state.plan, &state.sources) else {
        return Ok(());
    };
    if let Some(refusal) = &plan.refusal {
        return Err(PluginError::Step(format!(
            "cpuset_policy=strict: {refusal}"
        )));
    }
    let Some(applied) = state.applied.as_mut() else {
        return Ok(());
    };
    let _root = crate::privilege::RootGuard::regain()
        .map_err(|e| PluginError::Step(format!("cannot regain root: {e}")))?;
    let cgroups = Cgroups::new(sources.mounts.clone());
    let registry = Registry::new(&config.run_dir);
    let t = target(&cgroups, &registry, sources);
    if let Some(repair) =
        apply::protect_new_threads(&t, plan, applied).map_err(ReconcileError::from)?
    {
        log::info!("{repair}");
    }
    Ok(())
}

fn task_post_fork(
    spank: &mut dyn Spank,
    config: &Config,
    state: &mut ReconcileState,
) -> Result<(), PluginError> {
    let (Some(plan), Some(sources)) = (&state.plan, &state.sources) else {
        return Ok(());
    };
    if state.applied.is_none() {
        return Ok(());
    }
    let task = apply::Task {
        pid: spank.task_pid()?,
        global_id: spank.task_global_id().ok(),
    };
    let cgroups = Cgroups::new(sources.mounts.clone());
    let registry = Registry::new(&config.run_dir);
    let t = target(&cgroups, &registry, sources);
    if let Some(repair) = apply::verify_task(&t, plan, task).map_err(ReconcileError::from)? {
        log::info!("repaired before release: {repair}");
    }
    Ok(())
}

fn exit(config: &Config, state: &mut ReconcileState) -> Result<(), PluginError> {
    let (Some(applied), Some(sources)) = (state.applied.take(), &state.sources) else {
        return Ok(());
    };
    let cgroups = Cgroups::new(sources.mounts.clone());
    let registry = Registry::new(&config.run_dir);
    apply::undo(&target(&cgroups, &registry, sources), &applied);
    Ok(())
}

impl From<ReconcileError> for PluginError {
    fn from(e: ReconcileError) -> PluginError {
        PluginError::Step(e.to_string())
    }
}
