//! slurmstepd: the hooks of one job step on one node, in the order Slurm
//! calls them (see shared notes, slurm.md):
//!
//! init -> init_post_opt -> user_init (euid = user) -> [fork] ->
//! task_init_privileged (each child, root) / task_post_fork (parent, per task,
//! after binding) -> task_init (child, user) -> task_exit -> exit.
//!
//! Each of berth's two jobs has its own file: `reconcile_step` (cpusets) and
//! `container_step` (SIF images). Reconciliation goes first in every hook, so
//! a container step is placed exactly as a plain one.

use super::{container_step, reconcile_step, register_options, verbose, PluginError, State};
use crate::spank::{Hook, Spank};

pub(super) fn on_hook(
    hook: Hook,
    spank: &mut dyn Spank,
    state: &mut State,
) -> Result<(), PluginError> {
    if hook == Hook::Init {
        register_options(spank, state)?;
    }
    let config = match &state.config {
        Ok(config) => config.clone(),
        // A broken plugstack.conf line: reconcile nothing, but still refuse a
        // container request rather than run the command on the host.
        Err(e) => return container_step::refuse_when_misconfigured(hook, spank, e),
    };
    reconcile_step::on_hook(hook, spank, &config, &mut state.reconcile)?;
    container_step::on_hook(hook, spank, &config, &mut state.container)?;
    if hook == Hook::TaskInit {
        let label = super::step_label(spank, spank.context());
        verbose::in_task(spank, &label, state.reconcile.decision.as_deref())?;
    }
    Ok(())
}
