//! The only code that talks to Slurm's C API.
//!
//! Everything else in berth sees Slurm through the [`Spank`] trait: typed items,
//! the job environment and option registration. [`handle::SpankHandle`] is the
//! real implementation over a `spank_t`; unit tests use [`fake::FakeSpank`].
//! `export` holds the exported `slurm_spank_*` symbols: each catches panics,
//! logs errors once and turns them into Slurm's return codes.

pub mod export;
pub mod fake;
pub mod ffi;
pub mod handle;
pub mod log;
pub mod options;

use std::fmt;

/// Which Slurm process berth runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// srun
    Local,
    /// slurmstepd, the parent of the job's tasks
    Remote,
    /// sbatch or salloc
    Allocator,
    /// slurmd itself
    Slurmd,
    /// prolog/epilog scripts
    JobScript,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Local => "local",
            Context::Remote => "remote",
            Context::Allocator => "allocator",
            Context::Slurmd => "slurmd",
            Context::JobScript => "job_script",
        }
    }
}

/// The SPANK callbacks berth exports, in the order slurmstepd calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Init,
    InitPostOpt,
    LocalUserInit,
    UserInit,
    TaskInitPrivileged,
    TaskPostFork,
    TaskInit,
    TaskExit,
    Exit,
    SlurmdExit,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::InitPostOpt => "init_post_opt",
            Hook::LocalUserInit => "local_user_init",
            Hook::UserInit => "user_init",
            Hook::TaskInitPrivileged => "task_init_privileged",
            Hook::TaskPostFork => "task_post_fork",
            Hook::TaskInit => "task_init",
            Hook::TaskExit => "task_exit",
            Hook::Exit => "exit",
            Hook::SlurmdExit => "slurmd_exit",
        }
    }
}

/// A job step id as Slurm numbers it, with its special steps named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepId {
    Normal(u32),
    Batch,
    Extern,
    Interactive,
    Pending,
}

impl StepId {
    pub fn from_raw(raw: u32) -> StepId {
        // Slurm's SLURM_{PENDING,EXTERN_CONT,BATCH_SCRIPT,INTERACTIVE}_STEP.
        match raw {
            0xffff_fffd => StepId::Pending,
            0xffff_fffc => StepId::Extern,
            0xffff_fffb => StepId::Batch,
            0xffff_fffa => StepId::Interactive,
            n => StepId::Normal(n),
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepId::Normal(n) => write!(f, "{n}"),
            StepId::Batch => f.write_str("batch"),
            StepId::Extern => f.write_str("extern"),
            StepId::Interactive => f.write_str("interactive"),
            StepId::Pending => f.write_str("pending"),
        }
    }
}

/// A SPANK call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpankError {
    #[error("Slurm's {call} failed: {message}")]
    Slurm { call: String, message: String },
    #[error("{0} is not available in this Slurm version")]
    Unsupported(&'static str),
    #[error("{0}")]
    Invalid(String),
}

pub type SpankResult<T> = Result<T, SpankError>;

/// A user option (`srun --NAME[=ARG]`) as registered with Slurm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSpec {
    /// The long option name without dashes.
    pub name: String,
    /// One word describing the argument, `None` for a flag.
    pub arginfo: Option<String>,
    pub usage: String,
}

/// Slurm as berth sees it from inside a hook.
pub trait Spank {
    fn context(&self) -> Context;
    fn uid(&self) -> SpankResult<u32>;
    fn gid(&self) -> SpankResult<u32>;
    fn supplementary_gids(&self) -> SpankResult<Vec<u32>>;
    fn job_id(&self) -> SpankResult<u32>;
    fn step_id(&self) -> SpankResult<StepId>;
    fn local_task_count(&self) -> SpankResult<u32>;
    /// The task's local id (task hooks only).
    fn task_id(&self) -> SpankResult<u32>;
    /// The task's global id, its rank in the step (task hooks only; without a
    /// heterogeneous step's offset).
    fn task_global_id(&self) -> SpankResult<u32>;
    /// The task's pid (task_post_fork and task_exit, in slurmstepd).
    fn task_pid(&self) -> SpankResult<i32>;
    fn task_exit_status(&self) -> SpankResult<i32>;
    /// S_JOB_ALLOC_CORES: Slurm's abstract core indices, e.g. `0-2,7`.
    fn job_alloc_cores(&self) -> SpankResult<String>;
    /// S_STEP_ALLOC_CORES: Slurm's abstract core indices, e.g. `0-2,7`.
    fn step_alloc_cores(&self) -> SpankResult<String>;
    fn cpus_per_task(&self) -> SpankResult<u32>;
    fn job_env(&self) -> SpankResult<Vec<String>>;
    fn job_argv(&self) -> SpankResult<Vec<String>>;
    fn slurm_version(&self) -> SpankResult<String>;
    /// A variable of the job's environment (remote context).
    fn getenv(&self, name: &str) -> SpankResult<Option<String>>;
    fn setenv(&mut self, name: &str, value: &str, overwrite: bool) -> SpankResult<()>;
    fn unsetenv(&mut self, name: &str) -> SpankResult<()>;
    /// Prepends words to the task's argv (Slurm 23.11 and later).
    fn prepend_task_argv(&mut self, argv: &[String]) -> SpankResult<()>;
    /// Registers a user option; its values are read with [`options::value`].
    fn register_option(&mut self, spec: &OptionSpec) -> SpankResult<()>;
}
