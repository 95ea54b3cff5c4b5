//! slurmstepd side of cpuset reconciliation (see `crate::reconcile`).

use super::PluginError;
use crate::config::Config;
use crate::spank::{Hook, Spank};

/// What reconciliation keeps about the step between hooks.
#[derive(Default)]
pub(crate) struct ReconcileState {}

pub(super) fn on_hook(
    _hook: Hook,
    _spank: &mut dyn Spank,
    _config: &Config,
    _state: &mut ReconcileState,
) -> Result<(), PluginError> {
    Ok(())
}
