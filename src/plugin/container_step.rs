//! slurmstepd side of `srun --container=IMAGE.sif` (see `crate::container`).

use super::PluginError;
use crate::config::{Config, ConfigError};
use crate::spank::{Hook, Spank};

/// What the container support keeps about the step between hooks.
#[derive(Default)]
pub(crate) struct ContainerState {}

pub(super) fn on_hook(
    _hook: Hook,
    _spank: &mut dyn Spank,
    _config: &Config,
    _state: &mut ContainerState,
) -> Result<(), PluginError> {
    Ok(())
}

/// With a broken plugstack.conf line, a step that asks for a container fails
/// instead of running its command on the host.
pub(super) fn refuse_when_misconfigured(
    hook: Hook,
    spank: &mut dyn Spank,
    error: &ConfigError,
) -> Result<(), PluginError> {
    if hook != Hook::TaskInitPrivileged {
        return Ok(());
    }
    match spank.getenv("SLURM_CONTAINER")? {
        Some(image) => Err(PluginError::Step(format!(
            "cannot run --container={image}: berth is misconfigured on this node ({error}); \
             ask your administrator to fix berth's plugstack.conf line"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spank::fake::FakeSpank;

    #[test]
    fn a_misconfigured_node_refuses_container_steps_only() {
        let error = Config::from_args(&["bogus=1"]).unwrap_err();
        let mut spank = FakeSpank::remote();
        assert!(refuse_when_misconfigured(Hook::TaskInitPrivileged, &mut spank, &error).is_ok());
        spank
            .env
            .insert("SLURM_CONTAINER".into(), "/img.sif".into());
        let err =
            refuse_when_misconfigured(Hook::TaskInitPrivileged, &mut spank, &error).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot run --container=/img.sif: berth is misconfigured"));
        assert!(refuse_when_misconfigured(Hook::Init, &mut spank, &error).is_ok());
    }
}
