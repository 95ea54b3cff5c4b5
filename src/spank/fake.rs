//! An in-memory [`Spank`] for unit tests of the logic behind the SPANK layer.

use std::collections::BTreeMap;

use super::{Context, OptionSpec, Spank, SpankError, SpankResult, StepId};

#[derive(Debug, Clone)]
pub struct FakeSpank {
    pub context: Context,
    pub uid: u32,
    pub gid: u32,
    pub supplementary_gids: Vec<u32>,
    pub job_id: u32,
    pub step_id: StepId,
    pub local_task_count: u32,
    pub task_id: Option<u32>,
    pub task_global_id: Option<u32>,
    pub task_pid: Option<i32>,
    pub task_exit_status: Option<i32>,
    pub job_alloc_cores: String,
    pub step_alloc_cores: String,
    pub cpus_per_task: u32,
    pub env: BTreeMap<String, String>,
    pub argv: Vec<String>,
    pub slurm_version: String,
    /// Whether `prepend_task_argv` is available (Slurm >= 23.11).
    pub can_prepend_argv: bool,
    pub prepended_argv: Vec<String>,
    pub registered: Vec<OptionSpec>,
}

impl FakeSpank {
    /// A step 0 of job 42 in slurmstepd, uid/gid 1000, cores 0-1, 2 tasks.
    pub fn remote() -> FakeSpank {
        FakeSpank {
            context: Context::Remote,
            uid: 1000,
            gid: 1000,
            supplementary_gids: Vec::new(),
            job_id: 42,
            step_id: StepId::Normal(0),
            local_task_count: 2,
            task_id: None,
            task_global_id: None,
            task_pid: None,
            task_exit_status: None,
            job_alloc_cores: "0-1".into(),
            step_alloc_cores: "0-1".into(),
            cpus_per_task: 1,
            env: BTreeMap::new(),
            argv: vec!["true".into()],
            slurm_version: "22.05.8".into(),
            can_prepend_argv: false,
            prepended_argv: Vec::new(),
            registered: Vec::new(),
        }
    }
}

fn not_in_task(item: &'static str) -> SpankError {
    SpankError::Slurm {
        call: item.into(),
        message: "Not in task context".into(),
    }
}

impl Spank for FakeSpank {
    fn context(&self) -> Context {
        self.context
    }
    fn uid(&self) -> SpankResult<u32> {
        Ok(self.uid)
    }
    fn gid(&self) -> SpankResult<u32> {
        Ok(self.gid)
    }
    fn supplementary_gids(&self) -> SpankResult<Vec<u32>> {
        Ok(self.supplementary_gids.clone())
    }
    fn job_id(&self) -> SpankResult<u32> {
        Ok(self.job_id)
    }
    fn step_id(&self) -> SpankResult<StepId> {
        Ok(self.step_id)
    }
    fn local_task_count(&self) -> SpankResult<u32> {
        Ok(self.local_task_count)
    }
    fn task_id(&self) -> SpankResult<u32> {
        self.task_id.ok_or_else(|| not_in_task("S_TASK_ID"))
    }
    fn task_global_id(&self) -> SpankResult<u32> {
        self.task_global_id
            .ok_or_else(|| not_in_task("S_TASK_GLOBAL_ID"))
    }
    fn task_pid(&self) -> SpankResult<i32> {
        self.task_pid.ok_or_else(|| not_in_task("S_TASK_PID"))
    }
    fn task_exit_status(&self) -> SpankResult<i32> {
        self.task_exit_status
            .ok_or_else(|| not_in_task("S_TASK_EXIT_STATUS"))
    }
    fn job_alloc_cores(&self) -> SpankResult<String> {
        Ok(self.job_alloc_cores.clone())
    }
    fn step_alloc_cores(&self) -> SpankResult<String> {
        Ok(self.step_alloc_cores.clone())
    }
    fn cpus_per_task(&self) -> SpankResult<u32> {
        Ok(self.cpus_per_task)
    }
    fn job_env(&self) -> SpankResult<Vec<String>> {
        Ok(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect())
    }
    fn job_argv(&self) -> SpankResult<Vec<String>> {
        Ok(self.argv.clone())
    }
    fn slurm_version(&self) -> SpankResult<String> {
        Ok(self.slurm_version.clone())
    }
    fn getenv(&self, name: &str) -> SpankResult<Option<String>> {
        Ok(self.env.get(name).cloned())
    }
    fn setenv(&mut self, name: &str, value: &str, overwrite: bool) -> SpankResult<()> {
        if overwrite || !self.env.contains_key(name) {
            self.env.insert(name.into(), value.into());
        }
        Ok(())
    }
    fn unsetenv(&mut self, name: &str) -> SpankResult<()> {
        self.env.remove(name);
        Ok(())
    }
    fn prepend_task_argv(&mut self, argv: &[String]) -> SpankResult<()> {
        if !self.can_prepend_argv {
            return Err(SpankError::Unsupported("spank_prepend_task_argv"));
        }
        let mut new = argv.to_vec();
        new.append(&mut self.prepended_argv);
        self.prepended_argv = new;
        Ok(())
    }
    fn register_option(&mut self, spec: &OptionSpec) -> SpankResult<()> {
        self.registered.push(spec.clone());
        Ok(())
    }
}
