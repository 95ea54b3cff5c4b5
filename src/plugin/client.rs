//! srun, sbatch and salloc: register the user options; srun asks slurmstepd for
//! berth's decision line when it runs verbose (see `verbose`).

use super::{register_options, verbose, PluginError, State};
use crate::spank::{Context, Hook, Spank};

pub(super) fn on_hook(
    hook: Hook,
    spank: &mut dyn Spank,
    state: &mut State,
) -> Result<(), PluginError> {
    match hook {
        Hook::Init => register_options(spank, state),
        Hook::InitPostOpt if spank.context() == Context::Local => {
            verbose::request_if_verbose();
            Ok(())
        }
        _ => Ok(()),
    }
}
