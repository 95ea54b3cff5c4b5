//! `berth doctor`: what an admin on a compute node needs to find why a step
//! failed or ran on the wrong CPUs, in one report (text or JSON).
//!
//! `examine` gathers (Slurm's configuration, the node, its topology, every
//! external constraint, a dry run of berth's planner for slurmd's placement,
//! berth's log lines of a job); `verdict` decides (pure); `render` prints.

pub mod constraints;
pub mod job;
pub mod logs;
pub mod node;
pub mod render;
pub mod slurm_conf;
pub mod topology_view;
pub mod verdict;

use std::path::PathBuf;

use serde::Serialize;

use crate::cgroup::rules::Identity;
use crate::config::CpusetPolicy;
use crate::cpuset::CpuSet;
use crate::reconcile::facts::{self, Sources};
use crate::reconcile::{plan, process, Allocation, Facts, Plan};
use crate::topology::Topology;

use constraints::Constraints;
use job::{JobError, JobInfo};
use node::NodeInfo;
use slurm_conf::SlurmSide;
use topology_view::TopologyView;
use verdict::{BerthSetup, Status, StockInputs, TaskPlugins, Verdict};

/// What the admin asked about.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub slurm_conf: PathBuf,
    pub node: Option<String>,
    pub user: Option<String>,
    /// Slurm's abstract core indices.
    pub cores: Option<CpuSet>,
    pub job: Option<u32>,
}

/// Failures that leave nothing to report.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("cannot read {path}: {error} (give another with --slurm-conf or $SLURM_CONF)")]
    SlurmConf {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("several slurmd run on this host ({}); choose one with --node", .0.join(", "))]
    WhichNode(Vec<String>),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error(transparent)]
    Job(#[from] JobError),
}

/// The dry run: what a step of this user on these cores meets, and what
/// stock Slurm and berth make of it. Nothing is changed.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub user: Identity,
    /// Where the allocation came from (`--cores`, `--job`, or every core).
    pub allocation_from: String,
    pub allocation: Allocation,
    /// The facts for slurmd's pid (slurmstepd inherits its placement).
    pub facts: Facts,
    pub plan: Plan,
    /// The line berth logs for such a step (without its `berth: job J.S: `
    /// prefix), if it logs one at info or error level.
    pub expected_log: Option<String>,
    pub without_berth: Verdict,
    pub with_berth: Verdict,
}

/// berth's lines for a job in slurmd's log.
#[derive(Debug, Clone, Serialize)]
pub struct JobLogs {
    pub file: Option<PathBuf>,
    pub lines: Vec<String>,
    pub error: Option<String>,
}

/// The whole report; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub node: NodeInfo,
    pub slurm: SlurmSide,
    /// berth's configuration as slurmstepd will use it.
    pub berth: String,
    pub topology: Option<TopologyView>,
    pub constraints: Constraints,
    pub job: Option<JobInfo>,
    pub dry_run: Option<DryRun>,
    pub logs: Option<JobLogs>,
    /// Things that will fail or that the report could not check.
    pub problems: Vec<String>,
    pub status: Status,
    pub exit_code: i32,
}

/// Gathers everything and decides; read-only.
pub fn examine(req: &Request) -> Result<Report, DoctorError> {
    let slurm =
        slurm_conf::read_slurm_side(&req.slurm_conf).map_err(|error| DoctorError::SlurmConf {
            path: req.slurm_conf.clone(),
            error,
        })?;
    let node = node::find(req.node.as_deref(), &slurm).map_err(DoctorError::WhichNode)?;
    let node_name = node.name.clone().unwrap_or_else(|| node.host.clone());
    let job = match req.job {
        Some(id) => Some(job::query(&req.slurm_conf, id, &node_name)?),
        None => None,
    };
    let user = identity(req, job.as_ref())?;
    let sources = Sources::of_this_system();
    let constraints = constraints::gather(&sources, node.slurmd_pid);
    let mut problems = config_problems(&slurm);
    let topology = match Topology::discover() {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("cannot read this node's topology: {e}"));
            None
        }
    };
    let setup = berth_setup(&slurm);
    let dry_run = dry_run(DryRunInputs {
        req,
        job: job.as_ref(),
        user,
        sources: &sources,
        node: &node,
        slurm: &slurm,
        topology: topology.as_ref(),
        setup: &setup,
    })
    .map_err(|p| problems.push(p))
    .ok();
    let logs = req.job.map(|id| job_logs(&slurm, &node, &node_name, id));
    let status = Status::of(
        problems.len(),
        dry_run.as_ref().map_or(0, |d| d.plan.conflicts.len()),
        dry_run.as_ref().map(|d| &d.with_berth),
    );
    Ok(Report {
        berth: describe_setup(&setup),
        topology: topology
            .as_ref()
            .map(|t| TopologyView::new(t, &topology_view::packages_of_this_system())),
        node,
        slurm,
        constraints,
        job,
        dry_run,
        logs,
        problems,
        exit_code: status.exit_code(),
        status,
    })
}

/// Stands for "any user" when no user is given: only `*` rules match it.
fn any_user() -> Identity {
    Identity {
        uid: u32::MAX,
        user: "(any user)".into(),
        gid: u32::MAX,
        group: "(any group)".into(),
        groups: Vec::new(),
    }
}

fn identity(req: &Request, job: Option<&JobInfo>) -> Result<Identity, DoctorError> {
    let name = match (job, &req.user) {
        (_, Some(name)) => name.clone(),
        (Some(job), None) => job.user.clone(),
        (None, None) => return Ok(any_user()),
    };
    let (uid, gid) = passwd_ids(&name).ok_or(DoctorError::NoSuchUser(name))?;
    Ok(process::identity(uid, gid))
}

/// uid and primary gid of a user name (or of a numeric uid).
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let entry = match name.parse::<u32>() {
        Ok(uid) => crate::nss::user_by_uid(uid),
        Err(_) => crate::nss::user_by_name(name),
    };
    entry.ok().flatten().map(|pw| (pw.uid, pw.gid))
}

/// plugstack.conf problems Slurm or berth would trip over.
fn config_problems(slurm: &SlurmSide) -> Vec<String> {
    let mut problems: Vec<String> = slurm
        .plugstack_problems
        .iter()
        .map(|p| format!("{}:{}: {}", p.file.display(), p.line, p.message))
        .collect();
    for line in &slurm.berth_lines {
        if let Some(e) = &line.error {
            problems.push(format!(
                "berth's plugstack.conf line is broken: {e}; berth is inactive on this node"
            ));
        }
        if !line.plugin_exists {
            let what = if line.line.required {
                "every step on this node fails"
            } else {
                "berth is not loaded"
            };
            problems.push(format!(
                "{}:{}: no plugin file {}: {what}",
                line.line.file.display(),
                line.line.line,
                line.line.plugin
            ));
        }
    }
    if slurm.berth_lines.len() > 1 {
        problems.push(format!(
            "berth is loaded by {} plugstack.conf lines; keep one",
            slurm.berth_lines.len()
        ));
    }
    problems
}

/// How berth is set up, from its (first) plugstack.conf line.
pub fn berth_setup(slurm: &SlurmSide) -> BerthSetup {
    let Some(line) = slurm.berth_lines.first() else {
        return BerthSetup::Absent;
    };
    match (&line.config, &line.error) {
        _ if !line.plugin_exists && line.line.required => {
            BerthSetup::Missing(line.line.plugin.clone())
        }
        _ if !line.plugin_exists => BerthSetup::Absent,
        (Some(config), _) => BerthSetup::Active(config.cpuset_policy),
        (None, error) => BerthSetup::Broken(error.clone().unwrap_or_default()),
    }
}

fn describe_setup(setup: &BerthSetup) -> String {
    match setup {
        BerthSetup::Absent => "not loaded (no plugstack.conf line)".into(),
        BerthSetup::Broken(e) => format!("inactive: {e}"),
        BerthSetup::Missing(p) => format!("cannot be loaded: no file {p}"),
        BerthSetup::Active(policy) => format!("active, cpuset_policy={policy}"),
    }
}

struct DryRunInputs<'a> {
    req: &'a Request,
    job: Option<&'a JobInfo>,
    user: Identity,
    sources: &'a Sources,
    node: &'a NodeInfo,
    slurm: &'a SlurmSide,
    topology: Option<&'a Topology>,
    setup: &'a BerthSetup,
}

/// The allocation to try, and where it came from.
fn requested_cores(req: &Request, job: Option<&JobInfo>, topology: &Topology) -> (CpuSet, String) {
    if let Some(job) = job {
        let from = format!(
            "job {} (scontrol show job -d: CPU_IDs={} with ThreadsPerCore={})",
            job.job_id, job.cpu_ids, job.threads_per_core
        );
        return (job.cores.clone(), from);
    }
    if let Some(cores) = &req.cores {
        return (cores.clone(), format!("--cores {cores}"));
    }
    let all: CpuSet = (0..topology.cores.len() as u32).collect();
    (
        all,
        "every core of the node (give --cores or --job for a given allocation)".into(),
    )
}

/// Runs the planner on slurmd's placement; Err is a problem for the report.
fn dry_run(i: DryRunInputs<'_>) -> Result<DryRun, String> {
    let pid = i.node.slurmd_pid.ok_or_else(|| {
        format!(
            "slurmd is not running (no live slurmd in pid file {}): no dry run",
            i.node
                .slurmd_pid_file
                .as_ref()
                .map_or("?".into(), |p| p.display().to_string())
        )
    })?;
    let topology = i.topology.ok_or("no topology: no dry run")?;
    let (cores, allocation_from) = requested_cores(i.req, i.job, topology);
    let allocation =
        Allocation::resolve(&cores, topology).map_err(|e| format!("--cores {cores}: {e}"))?;
    let facts = facts::gather(i.sources, pid, i.user.clone())
        .map_err(|e| format!("cannot read slurmd's placement (pid {pid}): {e}"))?;
    let policy = match i.setup {
        BerthSetup::Active(p) => *p,
        _ => CpusetPolicy::Off,
    };
    let plan = plan::plan(&facts, &allocation, policy);
    let without_berth = verdict::without_berth(&StockInputs {
        plugins: TaskPlugins::parse(i.slurm.task_plugin.as_deref()),
        conflicts: &plan.conflicts,
        alloc: &allocation,
        inherited: &facts.placement.affinity,
        kernel_keeps_affinity: i.node.kernel_keeps_affinity,
    });
    let with_berth = verdict::with_berth(i.setup, &without_berth, &plan);
    Ok(DryRun {
        expected_log: expected_log(i.setup, &plan, &allocation),
        user: i.user,
        allocation_from,
        allocation,
        facts,
        plan,
        without_berth,
        with_berth,
    })
}

/// The line berth's stepd logs for this plan (see plugin/reconcile_step.rs).
pub fn expected_log(setup: &BerthSetup, plan: &Plan, alloc: &Allocation) -> Option<String> {
    if !matches!(setup, BerthSetup::Active(p) if *p != CpusetPolicy::Off) || plan.is_noop() {
        return None;
    }
    Some(match &plan.refusal {
        Some(refusal) => format!("cpuset_policy=strict: {refusal}"),
        None => plan.summary(alloc),
    })
}

fn job_logs(slurm: &SlurmSide, node: &NodeInfo, node_name: &str, job: u32) -> JobLogs {
    let Some(setting) = &slurm.slurmd_log_file else {
        return JobLogs {
            file: None,
            lines: Vec::new(),
            error: Some(format!(
                "SlurmdLogFile is not set: slurmd logs to syslog; search it for 'berth: job {job}.'"
            )),
        };
    };
    let file = logs::slurmd_log_path(setting, node_name, &node.host);
    let (lines, error) = match logs::berth_lines_for_job(&file, job) {
        Ok(lines) => (lines, None),
        Err(e) => (
            Vec::new(),
            Some(format!("cannot read {}: {e}", file.display())),
        ),
    };
    JobLogs {
        file: Some(file),
        lines,
        error,
    }
}
