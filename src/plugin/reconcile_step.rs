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
//! - task_post_fork (parent, root, after binding, before release): verify and
//!   repair the task's cpuset and affinity;
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
    let sources = Sources::of_this_system();
    let facts = gather_facts(spank, &sources)?;
    if facts.unconstrained() {
        log::trace!("no external cpuset constraint");
        return Ok(());
    }
    let alloc = allocation(spank, config)?;
    let plan = plan::plan(&facts, &alloc, config.cpuset_policy);
    if plan.is_noop() {
        log::trace!("{}", plan.summary(&alloc));
        return Ok(());
    }
    if plan.refusal.is_none() {
        let applied = apply_plan(&plan, config, &sources)?;
        log::info!("{}", plan.summary(&alloc));
        state.applied = Some(applied);
    }
    state.plan = Some(plan);
    state.sources = Some(sources);
    Ok(())
}

fn gather_facts(spank: &dyn Spank, sources: &Sources) -> Result<Facts, ReconcileError> {
    let user = process::identity(spank.uid()?, spank.gid()?);
    Ok(facts::gather(sources, std::process::id() as i32, user)?)
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
    let _root = process::RootGuard::acquire()
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
    let task_pid = spank.task_pid()?;
    let cgroups = Cgroups::new(sources.mounts.clone());
    let registry = Registry::new(&config.run_dir);
    let t = target(&cgroups, &registry, sources);
    if let Some(repair) = apply::verify_task(&t, plan, task_pid).map_err(ReconcileError::from)? {
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
