//! slurmstepd: the hooks of one job step on one node, in the order Slurm
//! calls them (see shared notes, slurm.md):
//!
//! init -> init_post_opt -> user_init (euid = user) -> [fork] ->
//! task_init_privileged (each child, root) / task_post_fork (parent, per task,
//! after binding) -> task_init (child, user) -> task_exit -> exit.

use super::{register_options, PluginError, State};
use crate::spank::{Hook, Spank};

pub(super) fn on_hook(
    hook: Hook,
    spank: &mut dyn Spank,
    state: &mut State,
) -> Result<(), PluginError> {
    match hook {
        Hook::Init => register_options(spank, state),
        _ => Ok(()),
    }
}
