//! slurmd itself: nothing to do yet beyond reporting a broken configuration
//! (done by the dispatcher in init).

use super::{PluginError, State};
use crate::spank::{Hook, Spank};

pub(super) fn on_hook(
    _hook: Hook,
    _spank: &mut dyn Spank,
    _state: &mut State,
) -> Result<(), PluginError> {
    Ok(())
}
