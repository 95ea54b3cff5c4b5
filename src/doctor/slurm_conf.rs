//! Reading Slurm's own configuration files as slurmd on this node sees them:
//! slurm.conf, cgroup.conf, plugstack.conf (with its includes), oci.conf.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, ConfigError};

/// `Key=Value` settings of a Slurm config file, keys lower-cased (Slurm's
/// keys are case-insensitive). Node and partition lines are skipped.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if matches!(
            key.as_str(),
            "nodename" | "partitionname" | "nodeset" | "downnodes" | "frontendname"
        ) {
            continue;
        }
        out.insert(key, value.trim().to_string());
    }
    out
}

/// One `required|optional PATH ARGS...` line of plugstack.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlugstackLine {
    pub file: PathBuf,
    pub line: usize,
    pub required: bool,
    pub plugin: String,
    pub args: Vec<String>,
}

impl PlugstackLine {
    pub fn is_berth(&self) -> bool {
        Path::new(&self.plugin)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("berth"))
    }
}

/// A plugstack.conf problem Slurm itself would trip over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlugstackProblem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Reads plugstack.conf and the files it includes, in Slurm's order.
pub fn read_plugstack(path: &Path) -> (Vec<PlugstackLine>, Vec<PlugstackProblem>) {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    read_plugstack_into(path, &mut lines, &mut problems, 0);
    (lines, problems)
}

fn read_plugstack_into(
    path: &Path,
    lines: &mut Vec<PlugstackLine>,
    problems: &mut Vec<PlugstackProblem>,
    depth: usize,
) {
    let problem = |line: usize, message: String| PlugstackProblem {
        file: path.to_path_buf(),
        line,
        message,
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return problems.push(problem(0, format!("cannot read: {e}"))),
    };
    for (i, raw) in text.lines().enumerate() {
        let words: Vec<&str> = raw
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match words.as_slice() {
            [] => {}
            ["include", pattern] if depth < 8 => {
                for file in glob_files(Path::new(pattern)) {
                    read_plugstack_into(&file, lines, problems, depth + 1);
                }
            }
            [kind @ ("required" | "optional"), plugin, args @ ..] => lines.push(PlugstackLine {
                file: path.to_path_buf(),
                line: i + 1,
                required: *kind == "required",
                plugin: plugin.to_string(),
                args: args.iter().map(|a| a.to_string()).collect(),
            }),
            _ => problems.push(problem(
                i + 1,
                format!("not a plugstack.conf line: {raw:?}"),
            )),
        }
    }
}

/// The files matching `dir/pattern` where only the file name may hold `*`.
fn glob_files(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    if !name.contains('*') {
        return vec![pattern.to_path_buf()];
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| wildcard_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && wildcard_match(rest, &tail[i..]))
        }
    }
}

/// A berth line of plugstack.conf and what berth makes of its arguments.
#[derive(Debug, Clone, Serialize)]
pub struct BerthLine {
    #[serde(flatten)]
    pub line: PlugstackLine,
    pub plugin_exists: bool,
    pub config: Option<Config>,
    pub error: Option<String>,
}

impl BerthLine {
    pub fn from_line(line: PlugstackLine, plugin_dir: Option<&str>) -> BerthLine {
        let path = Path::new(&line.plugin);
        let plugin_exists = if path.is_absolute() {
            path.exists()
        } else {
            plugin_dir
                .into_iter()
                .flat_map(|d| d.split(':'))
                .any(|d| Path::new(d).join(path).exists())
        };
        let (config, error) = match Config::from_args(&line.args) {
            Ok(c) => (Some(c), None),
            Err(ConfigError { arg, reason }) => (
                None,
                Some(format!(
                    "{}:{}: invalid argument '{arg}': {reason}",
                    line.file.display(),
                    line.line
                )),
            ),
        };
        BerthLine {
            line,
            plugin_exists,
            config,
            error,
        }
    }
}

/// The Slurm settings that decide how a step is bound and contained.
#[derive(Debug, Clone, Serialize)]
pub struct SlurmSide {
    pub slurm_conf: PathBuf,
    pub task_plugin: Option<String>,
    pub proctrack_type: Option<String>,
    pub cgroup_plugin: Option<String>,
    pub constrain: BTreeMap<String, String>,
    pub plugstack_conf: PathBuf,
    pub berth_lines: Vec<BerthLine>,
    pub other_plugins: Vec<PlugstackLine>,
    pub plugstack_problems: Vec<PlugstackProblem>,
    pub oci_conf: PathBuf,
    pub oci_conf_exists: bool,
    /// What oci.conf's presence means for `srun --container=IMAGE.sif`.
    pub container_note: String,
    pub slurmd_log_file: Option<String>,
    pub slurmd_pid_file: Option<String>,
    /// The `NodeName=` lines (name and NodeHostname), for finding this host's slurmd.
    pub nodes: Vec<NodeLine>,
}

/// One node of a `NodeName=` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    pub name: String,
    /// NodeHostname, else the name itself (Slurm's default).
    pub hostname: String,
}

/// The nodes of slurm.conf's `NodeName=` lines. Simple host ranges
/// (`n[1-3,5]`) are expanded; `NodeName=DEFAULT` is skipped.
pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut name = None;
        let mut hostname = None;
        for word in line.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key.to_ascii_lowercase().as_str() {
                "nodename" => name = Some(value),
                "nodehostname" => hostname = Some(value),
                _ => {}
            }
        }
        let Some(name) = name.filter(|n| !n.eq_ignore_ascii_case("default")) else {
            continue;
        };
        let names = expand_hostlist(name);
        let hosts = hostname.map(expand_hostlist);
        for (i, n) in names.iter().enumerate() {
            let host = match &hosts {
                Some(h) if h.len() == names.len() => h[i].clone(),
                Some(h) => h.first().cloned().unwrap_or_else(|| n.clone()),
                None => n.clone(),
            };
            out.push(NodeLine {
                name: n.clone(),
                hostname: host,
            });
        }
    }
    out
}

/// `n[1-3,5]` -> n1 n2 n3 n5; a list with commas outside brackets is split.
pub fn expand_hostlist(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(expand_one(&list[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(expand_one(&list[start..]));
    out
}

fn expand_one(host: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (host.find('['), host.find(']')) else {
        return vec![host.to_string()];
    };
    let (prefix, ranges, suffix) = (&host[..open], &host[open + 1..close], &host[close + 1..]);
    let mut out = Vec::new();
    for range in ranges.split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let width = a.len();
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            out.extend((a..=b).map(|n| format!("{prefix}{n:0width$}{suffix}")));
        }
    }
    out
}

/// Where slurm.conf is: `$SLURM_CONF`, else /etc/slurm/slurm.conf.
pub fn default_slurm_conf() -> PathBuf {
    std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/etc/slurm/slurm.conf".into())
}

/// The configuration of berth's (first) plugstack.conf line.
pub fn berth_config(slurm_conf: &Path) -> Result<Config, String> {
    let side = read_slurm_side(slurm_conf)
        .map_err(|e| format!("cannot read {}: {e}", slurm_conf.display()))?;
    let Some(line) = side.berth_lines.into_iter().next() else {
        return Err(format!(
            "{} has no berth line",
            side.plugstack_conf.display()
        ));
    };
    match (line.config, line.error) {
        (Some(c), _) => Ok(c),
        (None, e) => Err(e.unwrap_or_else(|| "berth's line is broken".into())),
    }
}

pub fn read_slurm_side(slurm_conf: &Path) -> std::io::Result<SlurmSide> {
    let text = fs::read_to_string(slurm_conf)?;
    let conf = parse_key_values(&text);
    let dir = slurm_conf.parent().unwrap_or(Path::new("/etc/slurm"));
    let cgroup = fs::read_to_string(dir.join("cgroup.conf"))
        .map(|t| parse_key_values(&t))
        .unwrap_or_default();
    let plugstack_conf = conf
        .get("plugstackconfig")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("plugstack.conf"));
    let (lines, plugstack_problems) = read_plugstack(&plugstack_conf);
    let plugin_dir = conf.get("plugindir").map(String::as_str);
    let (berth, other): (Vec<_>, Vec<_>) = lines.into_iter().partition(PlugstackLine::is_berth);
    let oci_conf = dir.join("oci.conf");
    let oci_conf_exists = oci_conf.exists();
    Ok(SlurmSide {
        slurm_conf: slurm_conf.to_path_buf(),
        task_plugin: conf.get("taskplugin").cloned(),
        proctrack_type: conf.get("proctracktype").cloned(),
        cgroup_plugin: cgroup.get("cgroupplugin").cloned(),
        constrain: cgroup
            .into_iter()
            .filter(|(k, _)| k.starts_with("constrain"))
            .collect(),
        plugstack_conf,
        berth_lines: berth
            .into_iter()
            .map(|l| BerthLine::from_line(l, plugin_dir))
            .collect(),
        other_plugins: other,
        plugstack_problems,
        container_note: container_note(oci_conf_exists),
        oci_conf,
        oci_conf_exists,
        slurmd_log_file: conf.get("slurmdlogfile").cloned(),
        slurmd_pid_file: conf.get("slurmdpidfile").cloned(),
        nodes: parse_nodes(&text),
    })
}

fn container_note(oci_conf_exists: bool) -> String {
    if oci_conf_exists {
        "oci.conf exists: Slurm runs --container values itself as OCI bundles; berth handles only .sif images".into()
    } else {
        "no oci.conf: Slurm leaves --container to plugins; berth runs .sif images and refuses anything else".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_case_insensitive_and_skip_comments_and_nodes() {
        let kv = parse_key_values(
            "TaskPlugin=task/affinity,task/cgroup # comment\n#ProctrackType=x\nNodeName=n1 CPUs=2\nproctracktype = proctrack/cgroup\n",
        );
        assert_eq!(
            kv.get("taskplugin").map(String::as_str),
            Some("task/affinity,task/cgroup")
        );
        assert_eq!(
            kv.get("proctracktype").map(String::as_str),
            Some("proctrack/cgroup")
        );
        assert!(!kv.contains_key("nodename"));
    }

    #[test]
    fn plugstack_follows_includes_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("plugstack.conf.d")).unwrap();
        fs::write(
            d.join("plugstack.conf"),
            format!(
                "optional /x/other.so\ninclude {}/plugstack.conf.d/*.conf\nnonsense here\n",
                d.display()
            ),
        )
        .unwrap();
        fs::write(
            d.join("plugstack.conf.d/berth.conf"),
            "required /usr/lib/libberth.so cpuset_policy=bogus # x\n",
        )
        .unwrap();
        fs::write(
            d.join("plugstack.conf.d/ignored.txt"),
            "required /nope.so\n",
        )
        .unwrap();
        let (lines, problems) = read_plugstack(&d.join("plugstack.conf"));
        assert_eq!(lines.len(), 2);
        assert!(lines[1].is_berth() && lines[1].required);
        assert_eq!(lines[1].args, vec!["cpuset_policy=bogus"]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 3);
        let berth = BerthLine::from_line(lines[1].clone(), None);
        assert!(berth.error.unwrap().ends_with(
            "berth.conf:1: invalid argument 'cpuset_policy=bogus': accepted values: shares, widen, strict, off"
        ));
    }

    #[test]
    fn node_lines_give_names_and_hostnames() {
        let nodes = parse_nodes(
            "NodeName=DEFAULT CPUs=2\nNodeName=b0n1 NodeHostname=h1 Port=1\nnodename=c[01-02,7] CPUs=1 # x\n#NodeName=gone\n",
        );
        let pairs: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.hostname.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![("b0n1", "h1"), ("c01", "c01"), ("c02", "c02"), ("c7", "c7")]
        );
    }

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(wildcard_match("*.conf", "berth.conf"));
        assert!(!wildcard_match("*.conf", "berth.conf.bak"));
        assert!(wildcard_match("a*b*c", "aXXbYc"));
        assert!(wildcard_match("exact", "exact"));
    }
}
