//! srun, sbatch and salloc: register the user options; nothing else runs here.

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
