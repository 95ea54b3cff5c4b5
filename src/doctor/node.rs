//! Which slurmd on this host the report is about: its node name (several
//! slurmd may run on one host), its pid (from SlurmdPidFile) and the kernel.

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::slurm_conf::{NodeLine, SlurmSide};

/// The node and its slurmd, as far as they could be found.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// The slurmd node name (`slurmd -N`), None when it cannot be told.
    pub name: Option<String>,
    pub host: String,
    pub slurmd_pid_file: Option<PathBuf>,
    pub slurmd_pid: Option<i32>,
    pub kernel: String,
    /// Kernels >= 6.2 keep a mask set with sched_setaffinity when a process
    /// changes cpuset ("user-requested affinity"): slurmd's narrow mask then
    /// survives into tasks that task/affinity does not bind.
    pub kernel_keeps_affinity: bool,
}

/// Slurm's default SlurmdPidFile.
const DEFAULT_PID_FILE: &str = "/var/run/slurmd.pid";

/// The short host name (what Slurm compares NodeHostname with).
pub fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    name.split('.').next().unwrap_or("").to_string()
}

/// The node names slurm.conf gives this host.
pub fn nodes_of_host<'a>(nodes: &'a [NodeLine], host: &str) -> Vec<&'a str> {
    nodes
        .iter()
        .filter(|n| n.hostname == host || n.hostname.split('.').next() == Some(host))
        .map(|n| n.name.as_str())
        .collect()
}

/// Picks the node: `--node`, else the only node of this host, else the host
/// name. Err lists the candidates when several slurmd share the host.
pub fn choose_node(
    asked: Option<&str>,
    nodes: &[NodeLine],
    host: &str,
) -> Result<String, Vec<String>> {
    if let Some(name) = asked {
        return Ok(name.to_string());
    }
    match nodes_of_host(nodes, host).as_slice() {
        [] => Ok(host.to_string()),
        [one] => Ok(one.to_string()),
        many => Err(many.iter().map(|s| s.to_string()).collect()),
    }
}

/// Expands `%n` (node name) and `%h` (host name) as slurmd does in
/// SlurmdPidFile, SlurmdLogFile and SlurmdSpoolDir.
pub fn expand(setting: &str, node: &str, host: &str) -> String {
    setting.replace("%n", node).replace("%h", host)
}

/// slurmd's pid from its pid file, if that process is a live slurmd.
pub fn slurmd_pid(pid_file: &std::path::Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "slurmd").then_some(pid)
}

/// `major.minor` of a kernel release such as `6.18.44-fc`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Finds the node and its slurmd; Err lists the candidate node names.
pub fn find(asked: Option<&str>, slurm: &SlurmSide) -> Result<NodeInfo, Vec<String>> {
    let host = short_hostname();
    let name = choose_node(asked, &slurm.nodes, &host)?;
    let pid_file = PathBuf::from(expand(
        slurm.slurmd_pid_file.as_deref().unwrap_or(DEFAULT_PID_FILE),
        &name,
        &host,
    ));
    let kernel = kernel_release();
    Ok(NodeInfo {
        slurmd_pid: slurmd_pid(&pid_file),
        name: Some(name),
        host,
        slurmd_pid_file: Some(pid_file),
        kernel_keeps_affinity: kernel_version(&kernel).is_some_and(|v| v >= (6, 2)),
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, host: &str) -> NodeLine {
        NodeLine {
            name: name.into(),
            hostname: host.into(),
        }
    }

    #[test]
    fn the_only_node_of_the_host_is_chosen() {
        let nodes = [node("n1", "h"), node("n2", "other")];
        assert_eq!(choose_node(None, &nodes, "h"), Ok("n1".into()));
        assert_eq!(choose_node(Some("n2"), &nodes, "h"), Ok("n2".into()));
        assert_eq!(choose_node(None, &nodes, "x"), Ok("x".into()));
    }

    #[test]
    fn several_slurmd_on_one_host_need_node() {
        let nodes = [node("b0n1", "h.example.org"), node("b0n2", "h")];
        assert_eq!(
            choose_node(None, &nodes, "h"),
            Err(vec!["b0n1".to_string(), "b0n2".to_string()])
        );
    }

    #[test]
    fn settings_expand_node_and_host() {
        assert_eq!(
            expand("/run/slurmd-%n-%h.pid", "n1", "h"),
            "/run/slurmd-n1-h.pid"
        );
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.10.0-28-amd64"), Some((5, 10)));
        assert!(kernel_version("6.2.0") >= Some((6, 2)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
