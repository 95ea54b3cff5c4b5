//! berth's own lines for a job, taken from slurmd's log.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Expands `%n` (node name) and `%h` (host name) in a SlurmdLogFile setting.
pub fn slurmd_log_path(setting: &str, node: &str, host: &str) -> PathBuf {
    PathBuf::from(setting.replace("%n", node).replace("%h", host))
}

/// The lines of `log` that berth wrote about job `job` (any step).
pub fn berth_lines_for_job(log: &Path, job: u32) -> std::io::Result<Vec<String>> {
    let needle = format!("berth: job {job}.");
    let reader = BufReader::new(File::open(log)?);
    let mut out = Vec::new();
    for line in reader.split(b'\n') {
        let line = String::from_utf8_lossy(&line?).into_owned();
        if line.contains(&needle) {
            out.push(line);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_jobs_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("slurmd.log");
        std::fs::write(
            &log,
            "[t] [7.0] berth: job 7.0: cpuset conflict ...\n[t] [17.0] berth: job 17.0: x\n[t] other\n[t] [7.batch] berth: job 7.batch: y\n",
        )
        .unwrap();
        let lines = berth_lines_for_job(&log, 7).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("job 7.batch: y"));
    }

    #[test]
    fn log_path_expands_node_and_host() {
        assert_eq!(
            slurmd_log_path("/var/log/slurmd-%n.log", "n1", "h"),
            PathBuf::from("/var/log/slurmd-n1.log")
        );
    }
}
