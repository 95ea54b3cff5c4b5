//! A running job's user and cores on this node, from `scontrol show job -d`.
//!
//! `CPU_IDs=` there are NOT OS CPU numbers. In 22.05 (libslurm's
//! `slurm_sprint_job_info`) and in 23.x-25.x (scontrol's `_sprint_job_info`)
//! Slurm prints, for each abstract core `c` of the job's core bitmap on the
//! node, the ids `c * ThreadsPerCore + t`: abstract CPU indices. (Releases
//! before 14.x printed the core bitmap itself.) So the abstract core list is
//! `CPU_IDs / ThreadsPerCore`, with ThreadsPerCore from `scontrol show node`,
//! the same value scontrol divides by; the topology then maps those cores to
//! OS CPUs exactly as slurmstepd does.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::slurm_conf::expand_hostlist;
use crate::cpuset::CpuSet;

/// What `berth doctor --job` needs of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobInfo {
    pub job_id: u32,
    pub user: String,
    pub uid: u32,
    pub state: String,
    /// `CPU_IDs=` of this node, as printed (abstract CPU indices).
    pub cpu_ids: CpuSet,
    pub threads_per_core: u32,
    /// Slurm's abstract core indices of the job on this node.
    pub cores: CpuSet,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot run {command}: {error}")]
    Run {
        command: String,
        error: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("job {job}: {reason}")]
    Parse { job: u32, reason: String },
}

/// The value of `key=` among the whitespace-separated words of `text`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `UserId=alice(5002)` -> ("alice", 5002).
fn user_of(text: &str) -> Option<(String, u32)> {
    let value = field(text, "UserId")?;
    let (name, rest) = value.split_once('(')?;
    Some((name.to_string(), rest.trim_end_matches(')').parse().ok()?))
}

/// The `CPU_IDs=` of `node` in the `Nodes=... CPU_IDs=...` lines.
fn cpu_ids_of(text: &str, node: &str) -> Option<CpuSet> {
    text.lines().find_map(|line| {
        let nodes = field(line, "Nodes")?;
        let ids = field(line, "CPU_IDs")?;
        expand_hostlist(nodes)
            .iter()
            .any(|n| n == node)
            .then(|| CpuSet::parse(ids).ok())?
    })
}

/// Abstract CPU indices -> abstract core indices.
pub fn cores_of_cpu_ids(cpu_ids: &CpuSet, threads_per_core: u32) -> CpuSet {
    let threads = threads_per_core.max(1);
    cpu_ids.iter().map(|id| id / threads).collect()
}

/// Parses `scontrol show job -d JOB` for `node`.
pub fn parse(job: u32, text: &str, node: &str, threads_per_core: u32) -> Result<JobInfo, JobError> {
    let err = |reason: String| JobError::Parse { job, reason };
    let (user, uid) = user_of(text).ok_or_else(|| err("no UserId= in scontrol's output".into()))?;
    let state = field(text, "JobState").unwrap_or("UNKNOWN").to_string();
    let cpu_ids = cpu_ids_of(text, node).ok_or_else(|| {
        err(format!(
            "no CPU_IDs for node {node} (state {state}; is the job running on this node?)"
        ))
    })?;
    Ok(JobInfo {
        job_id: job,
        user,
        uid,
        state,
        cores: cores_of_cpu_ids(&cpu_ids, threads_per_core),
        cpu_ids,
        threads_per_core,
    })
}

fn scontrol(slurm_conf: &Path, args: &[&str]) -> Result<String, JobError> {
    let command = format!("scontrol {}", args.join(" "));
    let out = Command::new("scontrol")
        .args(args)
        .env("SLURM_CONF", slurm_conf)
        .output()
        .map_err(|error| JobError::Run {
            command: command.clone(),
            error,
        })?;
    if !out.status.success() {
        return Err(JobError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Asks Slurm for job `job` on `node`.
pub fn query(slurm_conf: &Path, job: u32, node: &str) -> Result<JobInfo, JobError> {
    let node_text = scontrol(slurm_conf, &["show", "node", "-o", node])?;
    let threads = field(&node_text, "ThreadsPerCore")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let text = scontrol(slurm_conf, &["show", "job", "-d", &job.to_string()])?;
    parse(job, &text, node, threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW_JOB: &str = "JobId=42 JobName=sleep
   UserId=berthrule(5002) GroupId=berthrule(5002) MCS_label=N/A
   JobState=RUNNING Reason=None Dependency=(null)
   NodeList=b0n[1-2]
   NumNodes=2 NumCPUs=6 NumTasks=2 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   JOB_GRES=(null)
     Nodes=b0n1 CPU_IDs=2-3 Mem=0 GRES=
     Nodes=b0n2 CPU_IDs=0-1,6-7 Mem=0 GRES=
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
";

    #[test]
    fn a_nodes_cpu_ids_become_abstract_cores() {
        let job = parse(42, SHOW_JOB, "b0n2", 2).unwrap();
        assert_eq!(job.user, "berthrule");
        assert_eq!(job.uid, 5002);
        assert_eq!(job.state, "RUNNING");
        assert_eq!(job.cpu_ids, CpuSet::parse("0-1,6-7").unwrap());
        assert_eq!(job.cores, CpuSet::parse("0,3").unwrap());
        let one = parse(42, SHOW_JOB, "b0n1", 1).unwrap();
        assert_eq!(one.cores, CpuSet::parse("2-3").unwrap());
    }

    #[test]
    fn a_job_elsewhere_is_an_error_naming_the_node() {
        let e = parse(42, SHOW_JOB, "c9", 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "job 42: no CPU_IDs for node c9 (state RUNNING; is the job running on this node?)"
        );
    }

    #[test]
    fn ranged_node_lines_match_each_node() {
        let text = "UserId=a(1) JobState=RUNNING\n     Nodes=n[1-3] CPU_IDs=0 Mem=0 GRES=\n";
        assert!(parse(1, text, "n2", 1).is_ok());
    }
}
