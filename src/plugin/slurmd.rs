//! slurmd itself: reporting a broken configuration (done by the dispatcher in
//! init), and unmounting container images left idle (at start and exit).

use super::{container_step, PluginError, State};
use crate::spank::{Hook, Spank};

pub(super) fn on_hook(
    hook: Hook,
    _spank: &mut dyn Spank,
    state: &mut State,
) -> Result<(), PluginError> {
    if let (Hook::Init | Hook::SlurmdExit, Ok(config)) = (hook, &state.config) {
        container_step::reap_idle(config);
    }
    Ok(())
}
