//! slurmd itself: reporting a broken configuration (done by the dispatcher in
//! init), and unmounting container images left idle (at start and exit).

use std::time::Duration;

use super::{container_step, PluginError, State};
use crate::spank::{Hook, Spank};

pub(super) fn on_hook(
    hook: Hook,
    _spank: &mut dyn Spank,
    state: &mut State,
) -> Result<(), PluginError> {
    let Ok(config) = &state.config else {
        return Ok(());
    };
    match hook {
        Hook::Init => {
            container_step::reap_idle(config, Duration::from_secs(config.mount_idle_seconds))
        }
        Hook::SlurmdExit => container_step::reap_idle(config, Duration::ZERO),
        _ => {}
    }
    Ok(())
}
