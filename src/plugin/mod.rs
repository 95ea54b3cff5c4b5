//! What berth does in each SPANK hook, by Slurm context: `client` (srun,
//! sbatch, salloc), `stepd` (slurmstepd, where the work happens) and
//! `slurmd`. This is the one dispatcher; no hook is handled elsewhere.

mod client;
mod container_step;
mod reconcile_step;
mod slurmd;
mod stepd;
mod verbose;

use std::sync::{Mutex, MutexGuard};

use crate::config::{Config, ConfigError};
use crate::spank::{self, Context, Hook, Spank, SpankError};

/// A failure that ends the hook with an error return to Slurm.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Spank(#[from] SpankError),
    /// A step that cannot run as asked; the text names the cause and the fix.
    #[error("{0}")]
    Step(String),
    /// A step refused with a message the user has already been shown; the
    /// hook fails without printing it again.
    #[error("{0}")]
    Reported(String),
}

impl PluginError {
    /// Whether the user has already been told (then log, do not print).
    pub fn already_reported(&self) -> bool {
        matches!(self, PluginError::Reported(_))
    }
}

/// berth's state in one Slurm process (srun, slurmstepd, slurmd).
pub(crate) struct State {
    /// The plugstack.conf configuration, or why it is unusable.
    pub config: Result<Config, ConfigError>,
    pub reconcile: reconcile_step::ReconcileState,
    pub container: container_step::ContainerState,
}

impl State {
    fn new(args: &[String]) -> State {
        State {
            config: Config::from_args(args),
            reconcile: Default::default(),
            container: Default::default(),
        }
    }

    /// The configuration, or the defaults when the admin's is broken (the
    /// error is reported once, in init).
    pub fn config_or_default(&self) -> Config {
        self.config.clone().unwrap_or_default()
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<State>> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one SPANK hook.
pub(crate) fn on_hook(
    hook: Hook,
    spank: &mut dyn Spank,
    args: &[String],
) -> Result<(), PluginError> {
    let mut guard = state();
    let state = guard.get_or_insert_with(|| State::new(args));
    let context = spank.context();
    spank::log::set_step_label(step_label(spank, context));
    if hook == Hook::Init {
        report_config_error(state, context);
    }
    if state.config.as_ref().is_ok_and(|c| c.log_hooks) {
        log::info!("{}", hook_line(hook, spank));
    }
    match context {
        Context::Local | Context::Allocator => client::on_hook(hook, spank, state),
        Context::Remote => stepd::on_hook(hook, spank, state),
        Context::Slurmd => slurmd::on_hook(hook, spank, state),
        Context::JobScript => Ok(()),
    }
}

/// `job J.S` once Slurm knows the job, empty before (e.g. srun's init).
fn step_label(spank: &dyn Spank, context: Context) -> String {
    if matches!(context, Context::Slurmd) {
        return String::new();
    }
    match (spank.job_id(), spank.step_id()) {
        (Ok(job), Ok(step)) if job != 0 => format!("job {job}.{step}"),
        (Ok(job), _) if job != 0 => format!("job {job}"),
        _ => String::new(),
    }
}

fn report_config_error(state: &State, context: Context) {
    let Err(e) = &state.config else { return };
    match context {
        Context::Remote | Context::Slurmd => {
            log::error!("{e}; berth is inactive on this node until it is fixed")
        }
        _ => log::debug!("{e}; berth is inactive until the plugstack.conf line is fixed"),
    }
}

fn item<T: std::fmt::Display>(value: Result<T, SpankError>) -> String {
    match value {
        Ok(v) => {
            let s = v.to_string();
            if s.is_empty() {
                "-".into()
            } else {
                s
            }
        }
        Err(_) => "-".into(),
    }
}

/// The `log_hooks=yes` line: the hook, the context and the items berth sees.
fn hook_line(hook: Hook, spank: &dyn Spank) -> String {
    format!(
        "hook {} in {}: uid={} gid={} job_cores={} step_cores={} local_tasks={}",
        hook.name(),
        spank.context().name(),
        item(spank.uid()),
        item(spank.gid()),
        item(spank.job_alloc_cores()),
        item(spank.step_alloc_cores()),
        item(spank.local_task_count()),
    )
}

/// Registers the user options (init, in every context that parses them).
fn register_options(spank: &mut dyn Spank, state: &State) -> Result<(), PluginError> {
    let prefix = state.config_or_default().option_prefix;
    for spec in crate::options::specs(&prefix) {
        if let Err(e) = spank.register_option(&spec) {
            // Another plugin (pyxis) may own the name: say which setting avoids it.
            log::error!("{e}; if another plugin uses --{}, set option_prefix= in berth's plugstack.conf line", spec.name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spank::fake::FakeSpank;
    use crate::spank::StepId;

    #[test]
    fn the_hook_line_names_hook_context_and_items() {
        let spank = FakeSpank::remote();
        assert_eq!(
            hook_line(Hook::UserInit, &spank),
            "hook user_init in remote: uid=1000 gid=1000 job_cores=0-1 step_cores=0-1 local_tasks=2"
        );
    }

    #[test]
    fn step_labels_name_special_steps() {
        let mut spank = FakeSpank::remote();
        assert_eq!(step_label(&spank, Context::Remote), "job 42.0");
        spank.step_id = StepId::Batch;
        assert_eq!(step_label(&spank, Context::Remote), "job 42.batch");
        spank.job_id = 0;
        assert_eq!(step_label(&spank, Context::Local), "");
    }

    #[test]
    fn empty_items_print_as_dash() {
        let mut spank = FakeSpank::remote();
        spank.job_alloc_cores.clear();
        assert!(hook_line(Hook::Init, &spank).contains("job_cores=-"));
    }
}
