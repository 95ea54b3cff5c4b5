//! The text report: read top to bottom, one section per concern, the
//! verdicts and the exit status last. Pure: a function of the Report.

use std::fmt::Write;
use std::path::Path;

use super::constraints::{Constraints, GroupView};
use super::slurm_conf::{BerthLine, SlurmSide};
use super::topology_view::TopologyView;
use super::verdict::Status;
use super::{DryRun, JobLogs, Report};
use crate::cgroup::cgred::SocketState;

pub fn text(r: &Report) -> String {
    let mut out = String::new();
    header(&mut out, r);
    slurm(&mut out, &r.slurm, &r.berth);
    topology(&mut out, r.topology.as_ref());
    constraints(&mut out, &r.constraints);
    if let Some(d) = &r.dry_run {
        dry_run(&mut out, d, r.slurm.task_plugin.as_deref());
    }
    if let Some(l) = &r.logs {
        logs(&mut out, l, r.job.as_ref().map(|j| j.job_id));
    }
    problems(&mut out, &r.problems);
    let _ = writeln!(
        out,
        "\nResult: {} (exit {})",
        status_text(r.status),
        r.exit_code
    );
    out
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Ok => "no conflict",
        Status::Reconciled => "conflicts that berth reconciles",
        Status::Fails => "something will fail (see above)",
    }
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n== {title}");
}

fn row(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{key:<16}{value}");
}

fn header(out: &mut String, r: &Report) {
    let n = &r.node;
    let slurmd = n.slurmd_pid.map_or("slurmd NOT running".to_string(), |p| {
        format!("slurmd pid {p}")
    });
    let keeps = if n.kernel_keeps_affinity {
        " (keeps user-requested CPU masks across cpuset moves)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "berth doctor: node {} on host {}, {slurmd}, kernel {}{keeps}",
        n.name.as_deref().unwrap_or("?"),
        n.host,
        n.kernel
    );
}

fn or_unset(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "(not set)".into())
}

fn slurm(out: &mut String, s: &SlurmSide, berth: &str) {
    section(out, &format!("Slurm ({})", s.slurm_conf.display()));
    row(out, "TaskPlugin", or_unset(s.task_plugin.as_ref()));
    row(out, "ProctrackType", or_unset(s.proctrack_type.as_ref()));
    row(out, "CgroupPlugin", or_unset(s.cgroup_plugin.as_ref()));
    let constrain: Vec<String> = s
        .constrain
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    row(
        out,
        "cgroup.conf",
        if constrain.is_empty() {
            "(no Constrain* settings)".into()
        } else {
            constrain.join(" ")
        },
    );
    row(out, "plugstack.conf", s.plugstack_conf.display());
    for line in &s.berth_lines {
        berth_line(out, line, &s.plugstack_conf);
    }
    if s.berth_lines.is_empty() {
        let _ = writeln!(out, "  no line loads berth");
    }
    for p in &s.other_plugins {
        let at = place(&p.file, p.line, &s.plugstack_conf);
        let _ = writeln!(out, "  {at}: {} (another plugin)", p.plugin);
    }
    for p in &s.plugstack_problems {
        let at = place(&p.file, p.line, &s.plugstack_conf);
        let _ = writeln!(out, "  {at}: ERROR: {}", p.message);
    }
    let oci = if s.oci_conf_exists {
        "present"
    } else {
        "absent"
    };
    row(
        out,
        "oci.conf",
        format!("{} {oci}: {}", s.oci_conf.display(), s.container_note),
    );
    row(out, "berth", berth);
}

/// `line N` in plugstack.conf itself, `FILE:N` in an included file.
fn place(file: &Path, line: usize, plugstack: &Path) -> String {
    if file == plugstack {
        format!("line {line}")
    } else {
        format!("{}:{line}", file.display())
    }
}

fn berth_line(out: &mut String, b: &BerthLine, plugstack: &Path) {
    let kind = if b.line.required {
        "required"
    } else {
        "optional"
    };
    let _ = writeln!(
        out,
        "  {}: {kind} {} {}",
        place(&b.line.file, b.line.line, plugstack),
        b.line.plugin,
        b.line.args.join(" ")
    );
    if !b.plugin_exists {
        let _ = writeln!(out, "    ERROR: no such plugin file");
    }
    match (&b.config, &b.error) {
        (Some(c), _) => {
            let settings: Vec<String> = c
                .settings()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "    parsed: {}", settings.join(" "));
            let _ = writeln!(out, "    image signatures: {}", signature_policy(c));
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "    ERROR: {e}");
        }
        (None, None) => {}
    }
}

/// `require_signature=` and the keys it trusts, as a step would load them.
pub fn signature_policy(c: &crate::config::Config) -> String {
    use crate::sif::trust::TrustedKeys;
    let keys = TrustedKeys::load(&c.signature_keys);
    match (c.require_signature, keys) {
        (false, Ok(k)) if k.keys.is_empty() => "not required (require_signature=no)".into(),
        (false, Ok(k)) => format!("not required (require_signature=no); keys: {k}"),
        (true, Ok(k)) if k.keys.is_empty() => "ERROR: require_signature=yes but signature_keys= names no key: every container step is refused".into(),
        (true, Ok(k)) => format!("required: the root filesystem must be signed by one of: {k}"),
        (_, Err(e)) => format!("ERROR: {e}: container steps are refused"),
    }
}

fn topology(out: &mut String, t: Option<&TopologyView>) {
    section(out, "Topology");
    let Some(t) = t else {
        let _ = writeln!(out, "unknown (see Problems)");
        return;
    };
    let _ = writeln!(
        out,
        "{} socket(s), {} cores, {} thread(s) per core, CPUs {}",
        t.sockets, t.cores, t.threads_per_core, t.cpus
    );
    for (node, cpus) in &t.numa_nodes {
        let _ = writeln!(out, "NUMA node {node}: CPUs {cpus}");
    }
    let map: Vec<String> = t
        .core_cpus
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}->{c}"))
        .collect();
    let _ = writeln!(out, "Slurm core -> OS CPUs: {}", map.join(" "));
}

fn lineage(views: &[GroupView]) -> String {
    views
        .iter()
        .map(|v| match (&v.cpuset, &v.error) {
            (Some(s), _) => format!(
                "{} (CPUs {}, memory nodes {})",
                v.group, s.effective_cpus, s.effective_mems
            ),
            (None, e) => format!("{} ({})", v.group, e.as_deref().unwrap_or("unreadable")),
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

fn constraints(out: &mut String, c: &Constraints) {
    section(out, "Constraints on CPUs from outside Slurm");
    if c.mounts.cpuset_v1.is_some() {
        row(
            out,
            "cpuset (v1)",
            if c.slurmd_cpuset.is_empty() {
                "?".into()
            } else {
                lineage(&c.slurmd_cpuset)
            },
        );
    }
    if c.slurmd_unified.is_empty() {
        row(
            out,
            "cgroup v2",
            "the cpuset controller is not enabled in the unified hierarchy",
        );
    } else {
        row(out, "cgroup v2", lineage(&c.slurmd_unified));
    }
    row(
        out,
        "affinity",
        c.slurmd_affinity
            .as_ref()
            .map_or("?".into(), |a| format!("slurmd's CPU mask {a}")),
    );
    for t in &c.slurmd_threads_differing {
        let _ = writeln!(
            out,
            "  slurmd thread {} has another mask: {}",
            t.tid, t.cpus
        );
    }
    cgrules(out, c);
    if c.systemd.is_empty() {
        row(out, "systemd", "no AllowedCPUs=/CPUAffinity= found");
    }
    for s in &c.systemd {
        row(
            out,
            "systemd",
            format!("{} ({})", s.setting, s.source.display()),
        );
    }
    if c.occupied_cpusets.is_empty() {
        row(out, "other cpusets", "none outside Slurm's hold processes");
    }
    for g in &c.occupied_cpusets {
        row(
            out,
            "other cpusets",
            format!(
                "{} CPUs {} memory nodes {}: {} process(es)",
                g.group, g.cpus, g.mems, g.processes
            ),
        );
    }
}

fn cgrules(out: &mut String, c: &Constraints) {
    let g = &c.cgrules;
    let pids = g
        .daemon_pids
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let socket = g.socket.display();
    let daemon = match (g.daemon_pids.is_empty(), g.socket_state) {
        (false, SocketState::Listening) => format!("cgrulesengd runs (pid {pids})"),
        (false, _) => format!(
            "cgrulesengd runs (pid {pids}) but does not listen on {socket}, so berth cannot ask it to leave steps alone"
        ),
        (true, SocketState::Listening) => {
            format!("a process that is not named cgrulesengd listens on {socket}")
        }
        (true, SocketState::Stale) => format!(
            "cgrulesengd does not run, but {socket} is left over (a stale socket, nobody listens)"
        ),
        (true, SocketState::Absent) => "cgrulesengd does not run".into(),
    };
    row(out, "cgrules", format!("{}: {daemon}", g.file.display()));
    if let Some(e) = &g.error {
        let _ = writeln!(out, "  ERROR: {e}");
    }
    for rule in &g.rules {
        let who = match &rule.process {
            Some(p) => format!("{}:{p}", rule.user),
            None => rule.user.clone(),
        };
        let _ = writeln!(
            out,
            "  line {}: {who} {} {}",
            rule.line,
            rule.controllers.join(","),
            rule.destination
        );
    }
}

fn dry_run(out: &mut String, d: &DryRun, task_plugin: Option<&str>) {
    section(out, "Dry run (nothing is changed)");
    row(out, "user", format!("{} (uid {})", d.user.user, d.user.uid));
    row(out, "allocation", &d.allocation_from);
    row(
        out,
        "",
        format!(
            "Slurm cores {} -> CPUs {}, memory nodes {}",
            d.allocation.cores, d.allocation.cpus, d.allocation.mems
        ),
    );
    if d.plan.conflicts.is_empty() {
        row(out, "conflicts", "none");
    }
    for c in &d.plan.conflicts {
        row(out, "conflict", c.describe());
    }
    let _ = writeln!(
        out,
        "Without berth (TaskPlugin={}): {}: {}",
        task_plugin.unwrap_or("task/none"),
        d.without_berth.outcome.text(),
        d.without_berth.reason
    );
    let _ = writeln!(
        out,
        "With berth: {}: {}",
        d.with_berth.outcome.text(),
        d.with_berth.reason
    );
    if let Some(line) = &d.expected_log {
        let _ = writeln!(out, "berth will log: {line}");
    }
}

fn logs(out: &mut String, l: &JobLogs, job: Option<u32>) {
    let file = l
        .file
        .as_ref()
        .map_or("?".into(), |f| f.display().to_string());
    section(
        out,
        &format!("berth's log lines for job {} ({file})", job.unwrap_or(0)),
    );
    if let Some(e) = &l.error {
        let _ = writeln!(out, "ERROR: {e}");
    } else if l.lines.is_empty() {
        let _ = writeln!(out, "none");
    }
    for line in &l.lines {
        let _ = writeln!(out, "{line}");
    }
}

fn problems(out: &mut String, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    section(out, "Problems");
    for p in problems {
        let _ = writeln!(out, "- {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::rules::Identity;
    use crate::cgroup::{CpusetState, Group, Hierarchy, Mounts};
    use crate::config::CpusetPolicy;
    use crate::cpuset::CpuSet;
    use crate::doctor::constraints::CgrulesView;
    use crate::doctor::node::NodeInfo;
    use crate::doctor::verdict::{self, BerthSetup, StockInputs, TaskPlugins};
    use crate::doctor::{berth_setup, expected_log, slurm_conf, DryRun};
    use crate::reconcile::facts::Placement;
    use crate::reconcile::{plan, Allocation, Facts};
    use crate::topology::Topology;

    fn set(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    fn state(cpus: &str) -> CpusetState {
        CpusetState {
            cpus: set(cpus),
            mems: set("0"),
            effective_cpus: set(cpus),
            effective_mems: set("0"),
        }
    }

    fn slurm_side(dir: &std::path::Path, berth_args: &str) -> slurm_conf::SlurmSide {
        let plugin = dir.join("libberth.so");
        std::fs::write(&plugin, "").unwrap();
        std::fs::write(
            dir.join("slurm.conf"),
            "TaskPlugin=task/affinity\nProctrackType=proctrack/cgroup\nNodeName=n1 NodeHostname=h CPUs=2\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("cgroup.conf"),
            "CgroupPlugin=cgroup/v1\nConstrainCores=yes\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("plugstack.conf"),
            format!("required {} {berth_args}\n", plugin.display()),
        )
        .unwrap();
        slurm_conf::read_slurm_side(&dir.join("slurm.conf")).unwrap()
    }

    /// slurmd in cpuset /ext {0} on a 2-core node; a step on cores 0-1.
    fn report(berth_args: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let slurm = slurm_side(dir.path(), berth_args);
        let topology = Topology::synthetic("core:2 pu:1").unwrap();
        let alloc = Allocation::resolve(&set("0-1"), &topology).unwrap();
        let ext = Group::new(Hierarchy::CpusetV1, "/ext");
        let mounts = Mounts {
            cpuset_v1: Some("/sys/fs/cgroup/cpuset".into()),
            cpu_v1: Some("/sys/fs/cgroup/cpu".into()),
            unified: None,
        };
        let facts = Facts {
            node_cpus: set("0-1"),
            node_mems: set("0"),
            mounts: mounts.clone(),
            placement: Placement {
                pid: 7,
                cpuset_group: Some(ext.clone()),
                cpuset: Some(state("0")),
                cpu_group: Some(Group::new(Hierarchy::CpuV1, "/")),
                affinity: set("0"),
            },
            user: Identity {
                uid: 5001,
                user: "alice".into(),
                gid: 5001,
                group: "alice".into(),
                groups: vec![],
            },
            rule: None,
            configured_weights: Default::default(),
            live_weights: Default::default(),
        };
        let setup = berth_setup(&slurm);
        let policy = match &setup {
            BerthSetup::Active(p) => *p,
            _ => CpusetPolicy::Off,
        };
        let plan = plan::plan(&facts, &alloc, policy);
        let without_berth = verdict::without_berth(&StockInputs {
            plugins: TaskPlugins::parse(slurm.task_plugin.as_deref()),
            conflicts: &plan.conflicts,
            alloc: &alloc,
            inherited: &facts.placement.affinity,
            kernel_keeps_affinity: true,
        });
        let with_berth = verdict::with_berth(&setup, &without_berth, &plan);
        let problems = super::super::config_problems(&slurm);
        let status = Status::of(problems.len(), plan.conflicts.len(), Some(&with_berth));
        Report {
            node: NodeInfo {
                name: Some("n1".into()),
                host: "h".into(),
                slurmd_pid_file: None,
                slurmd_pid: Some(7),
                kernel: "6.18.0".into(),
                kernel_keeps_affinity: true,
            },
            berth: super::super::describe_setup(&setup),
            topology: Some(TopologyView::new(&topology, &Default::default())),
            constraints: Constraints {
                mounts,
                slurmd_cpuset: vec![GroupView {
                    group: ext,
                    cpuset: Some(state("0")),
                    error: None,
                }],
                slurmd_unified: vec![],
                slurmd_affinity: Some(set("0")),
                slurmd_threads_differing: vec![],
                cgrules: CgrulesView {
                    file: "/etc/cgrules.conf".into(),
                    rules: vec![],
                    error: None,
                    socket: "/run/cgred.socket".into(),
                    socket_state: SocketState::Absent,
                    daemon_pids: vec![],
                },
                systemd: vec![],
                occupied_cpusets: vec![],
            },
            job: None,
            dry_run: Some(DryRun {
                user: facts.user.clone(),
                allocation_from: "--cores 0-1".into(),
                expected_log: expected_log(&setup, &plan, &alloc),
                allocation: alloc,
                facts,
                plan,
                without_berth,
                with_berth,
            }),
            logs: None,
            problems,
            exit_code: status.exit_code(),
            status,
            slurm,
        }
    }

    #[test]
    fn a_reconciled_conflict_reads_top_to_bottom_and_exits_1() {
        let r = report("cpuset_policy=shares");
        assert_eq!(r.exit_code, 1);
        let text = text(&r);
        let order = [
            "berth doctor: node n1 on host h, slurmd pid 7",
            "== Slurm (",
            "TaskPlugin      task/affinity",
            ": required ",
            "    parsed: cpuset_policy=shares log_hooks=no",
            "berth           active, cpuset_policy=shares",
            "== Topology",
            "Slurm core -> OS CPUs: 0->0 1->1",
            "== Constraints on CPUs from outside Slurm",
            "cpuset (v1)     cpuset:/ext (CPUs 0, memory nodes 0)",
            "affinity        slurmd's CPU mask 0",
            "== Dry run (nothing is changed)",
            "conflict        slurmd's cpuset cpuset:/ext (CPUs 0, memory nodes 0) lacks CPUs 1",
            "Without berth (TaskPlugin=task/affinity): fails: task/affinity cannot bind tasks to CPUs 1",
            "With berth: runs on its allocated CPUs: cpuset_policy=shares: moved the step to cpuset:/",
            "berth will log: cpuset conflict: ",
            "Result: conflicts that berth reconciles (exit 1)",
        ];
        let mut at = 0;
        for piece in order {
            let found = text[at..]
                .find(piece)
                .unwrap_or_else(|| panic!("{piece:?} missing after byte {at} in:\n{text}"));
            at += found + piece.len();
        }
        assert!(!text.contains("== Problems"), "{text}");
    }

    #[test]
    fn strict_with_a_conflict_fails_and_says_why() {
        let r = report("cpuset_policy=strict");
        assert_eq!(r.exit_code, 2);
        let text = text(&r);
        assert!(
            text.contains(
                "With berth: fails: cpuset_policy=strict refuses the step: this node imposes"
            ),
            "{text}"
        );
        assert!(
            text.contains("berth will log: cpuset_policy=strict: "),
            "{text}"
        );
        assert!(
            text.ends_with("Result: something will fail (see above) (exit 2)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_line_shows_its_error_and_a_problem() {
        let r = report("cpuset_policy=bogus");
        assert_eq!(r.exit_code, 2);
        let text = text(&r);
        assert!(text.contains("    ERROR: "), "{text}");
        assert!(text.contains("invalid argument 'cpuset_policy=bogus': accepted values: shares, widen, strict, off"), "{text}");
        assert!(text.contains("berth           inactive: "), "{text}");
        assert!(
            text.contains("== Problems\n- berth's plugstack.conf line is broken: "),
            "{text}"
        );
        // berth inactive: the stock verdict stands.
        assert!(
            text.contains("With berth: fails: berth is inactive: "),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "fails");
        assert_eq!(json["dry_run"]["with_berth"]["outcome"], "fails");
        assert_eq!(json["dry_run"]["plan"]["conflicts"][0]["kind"], "cpuset");
    }

    #[test]
    fn a_stale_socket_is_not_a_running_daemon() {
        let mut r = report("cpuset_policy=shares");
        r.constraints.cgrules.socket_state = SocketState::Stale;
        assert!(
            text(&r).contains("cgrulesengd does not run, but /run/cgred.socket is left over (a stale socket, nobody listens)"),
            "{}",
            text(&r)
        );
        r.constraints.cgrules.socket_state = SocketState::Listening;
        r.constraints.cgrules.daemon_pids = vec![12];
        assert!(
            text(&r).contains("cgrulesengd runs (pid 12)"),
            "{}",
            text(&r)
        );
        r.constraints.cgrules.socket_state = SocketState::Stale;
        assert!(
            text(&r).contains("cgrulesengd runs (pid 12) but does not listen on /run/cgred.socket"),
            "{}",
            text(&r)
        );
    }
}
