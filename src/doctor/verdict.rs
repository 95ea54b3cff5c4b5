//! What happens to a step: with stock Slurm (derived from TaskPlugin and the
//! conflicts, as the shared notes' table of Slurm 22.05's behaviour shows),
//! and with berth's configured policy. Pure: unit-tested on synthetic facts.

use serde::Serialize;

use crate::config::CpusetPolicy;
use crate::cpuset::CpuSet;
use crate::reconcile::{Allocation, Conflict, Plan};

/// How a step ends up, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Runs on its allocated CPUs.
    Fine,
    /// Runs, but on other CPUs than allocated (sharing a core with another
    /// job, or on fewer CPUs): a failure too, only a silent one.
    WrongCpus,
    /// The launch fails.
    Fails,
}

impl Outcome {
    pub fn text(self) -> &'static str {
        match self {
            Outcome::Fine => "runs on its allocated CPUs",
            Outcome::WrongCpus => "runs on the wrong CPUs",
            Outcome::Fails => "fails",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
}

impl Verdict {
    fn new(outcome: Outcome, reason: impl Into<String>) -> Verdict {
        Verdict {
            outcome,
            reason: reason.into(),
        }
    }
}

/// Which task plugins TaskPlugin names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPlugins {
    pub affinity: bool,
    pub cgroup: bool,
}

impl TaskPlugins {
    /// `task/affinity,task/cgroup` (absent: Slurm's default, task/none).
    pub fn parse(setting: Option<&str>) -> TaskPlugins {
        let has = |name: &str| {
            setting.is_some_and(|s| {
                s.split(',')
                    .any(|p| p.trim().trim_start_matches("task/") == name)
            })
        };
        TaskPlugins {
            affinity: has("affinity"),
            cgroup: has("cgroup"),
        }
    }
}

/// What stock Slurm does about each conflict; the worst one decides.
pub struct StockInputs<'a> {
    pub plugins: TaskPlugins,
    pub conflicts: &'a [Conflict],
    pub alloc: &'a Allocation,
    /// slurmd's affinity (what slurmstepd and its tasks inherit).
    pub inherited: &'a CpuSet,
    pub kernel_keeps_affinity: bool,
}

pub fn without_berth(i: &StockInputs<'_>) -> Verdict {
    let verdicts: Vec<Verdict> = i.conflicts.iter().map(|c| stock_on(i, c)).collect();
    let Some(worst) = verdicts.iter().map(|v| v.outcome).max() else {
        return Verdict::new(Outcome::Fine, "nothing outside Slurm narrows the step");
    };
    let reasons: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.outcome == worst)
        .map(|v| v.reason.as_str())
        .collect();
    Verdict::new(worst, reasons.join("; "))
}

fn stock_on(i: &StockInputs<'_>, conflict: &Conflict) -> Verdict {
    match conflict {
        Conflict::Cpuset {
            group,
            missing_cpus,
            ..
        } => stock_cpuset(i, &group.to_string(), missing_cpus),
        Conflict::Affinity { affinity, .. } => stock_affinity(i, affinity),
        Conflict::Rule {
            group,
            cpus,
            missing_cpus,
            ..
        } => stock_rule(i, &group.to_string(), cpus.as_ref(), missing_cpus),
    }
}

/// The mask the kernel leaves a task that only task/cgroup placed: the
/// inherited (user-requested) mask within the step's cpuset, when they meet
/// and the kernel keeps such masks; else the whole cpuset.
fn kept_mask(i: &StockInputs<'_>, inherited: &CpuSet) -> Option<CpuSet> {
    let kept = inherited.intersection(&i.alloc.cpus);
    (i.kernel_keeps_affinity && !kept.is_empty() && !i.alloc.cpus.is_subset(inherited))
        .then_some(kept)
}

fn stock_cpuset(i: &StockInputs<'_>, group: &str, missing: &CpuSet) -> Verdict {
    let p = i.plugins;
    if p.affinity && !p.cgroup {
        if missing.is_empty() {
            return Verdict::new(
                Outcome::WrongCpus,
                format!("the tasks stay in {group}, whose memory nodes lack the allocation's"),
            );
        }
        return Verdict::new(
            Outcome::Fails,
            format!(
                "task/affinity cannot bind tasks to CPUs {missing} outside {group}: the launch fails with \
                 'task_g_set_affinity: Invalid argument' (srun may still exit 0)"
            ),
        );
    }
    if !p.cgroup {
        return Verdict::new(
            Outcome::WrongCpus,
            format!("no task plugin moves the tasks out of {group}: they run on its CPUs"),
        );
    }
    if p.affinity {
        return Verdict::new(
            Outcome::Fine,
            format!("task/cgroup moves the step out of {group} and task/affinity binds each task"),
        );
    }
    stock_cgroup_only(i, i.inherited)
}

fn stock_cgroup_only(i: &StockInputs<'_>, inherited: &CpuSet) -> Verdict {
    match kept_mask(i, inherited) {
        Some(kept) => Verdict::new(
            Outcome::WrongCpus,
            format!(
                "task/cgroup alone does not reset the mask the tasks inherit from slurmd ({inherited}); \
                 the kernel keeps it, so they run only on CPUs {kept} of the allocated {}",
                i.alloc.cpus
            ),
        ),
        None => Verdict::new(
            Outcome::Fine,
            "task/cgroup places the tasks on the allocation".to_string(),
        ),
    }
}

fn stock_affinity(i: &StockInputs<'_>, affinity: &CpuSet) -> Verdict {
    let p = i.plugins;
    if p.affinity {
        return Verdict::new(
            Outcome::Fine,
            format!(
                "task/affinity binds each task explicitly, replacing slurmd's affinity {affinity} \
                 (except with --cpu-bind=none)"
            ),
        );
    }
    if p.cgroup {
        return stock_cgroup_only(i, affinity);
    }
    Verdict::new(
        Outcome::WrongCpus,
        format!("the tasks inherit slurmd's affinity {affinity}"),
    )
}

fn stock_rule(
    i: &StockInputs<'_>,
    group: &str,
    cpus: Option<&CpuSet>,
    missing: &CpuSet,
) -> Verdict {
    let Some(cpus) = cpus else {
        return Verdict::new(
            Outcome::Fine,
            format!("cgrulesengd's destination {group} does not exist, so it moves nothing"),
        );
    };
    let p = i.plugins;
    if p.affinity && !p.cgroup {
        if missing.is_empty() {
            return Verdict::new(
                Outcome::Fine,
                format!("cgrulesengd moves the tasks into {group} (CPUs {cpus}), which holds the allocation; task/affinity's binding stays"),
            );
        }
        return Verdict::new(
            Outcome::Fails,
            format!(
                "cgrulesengd moves slurmstepd into {group} (CPUs {cpus}) before binding: the launch fails \
                 with 'task_g_set_affinity: Invalid argument'"
            ),
        );
    }
    Verdict::new(
        Outcome::WrongCpus,
        format!(
            "cgrulesengd moves the tasks into {group} after Slurm placed them: they run on CPUs {cpus} \
             instead of the allocated {}",
            i.alloc.cpus
        ),
    )
}

/// How berth is set up on this node, as the dry run needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BerthSetup {
    /// No plugstack.conf line loads berth.
    Absent,
    /// The line's arguments are invalid: berth is inactive.
    Broken(String),
    /// A `required` line names a plugin file that does not exist: slurmstepd
    /// cannot load it and every step fails.
    Missing(String),
    Active(CpusetPolicy),
}

/// What happens with berth as configured, given the stock verdict and the plan.
pub fn with_berth(setup: &BerthSetup, stock: &Verdict, plan: &Plan) -> Verdict {
    let same = |why: String| Verdict::new(stock.outcome, format!("{why}; {}", stock.reason));
    match setup {
        BerthSetup::Absent => same("berth is not loaded (no plugstack.conf line)".into()),
        BerthSetup::Broken(e) => same(format!("berth is inactive: {e}")),
        BerthSetup::Missing(path) => Verdict::new(
            Outcome::Fails,
            format!("slurmstepd cannot load {path}: every step on this node fails"),
        ),
        BerthSetup::Active(_) if plan.conflicts.is_empty() => {
            Verdict::new(Outcome::Fine, "nothing to reconcile")
        }
        BerthSetup::Active(CpusetPolicy::Off) => {
            same("cpuset_policy=off leaves it to Slurm".into())
        }
        BerthSetup::Active(_) => match &plan.refusal {
            Some(refusal) => Verdict::new(
                Outcome::Fails,
                format!("cpuset_policy=strict refuses the step: {refusal}"),
            ),
            None => Verdict::new(
                Outcome::Fine,
                format!(
                    "cpuset_policy={}: {}",
                    plan.policy,
                    plan.actions
                        .iter()
                        .map(|a| a.describe())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        },
    }
}

/// The overall result and the exit status of `berth doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit 0: no conflict, nothing wrong.
    Ok,
    /// Exit 1: conflicts that berth reconciles.
    Reconciled,
    /// Exit 2: something will fail (a broken berth line, a problem found, a
    /// step that fails or runs on the wrong CPUs even with berth).
    Fails,
}

impl Status {
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Reconciled => 1,
            Status::Fails => 2,
        }
    }

    /// From the problems found, the dry run's conflicts and berth's verdict.
    pub fn of(problems: usize, conflicts: usize, with_berth: Option<&Verdict>) -> Status {
        if problems > 0 || with_berth.is_some_and(|v| v.outcome != Outcome::Fine) {
            Status::Fails
        } else if conflicts > 0 {
            Status::Reconciled
        } else {
            Status::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Group, Hierarchy};
    use crate::reconcile::Action;

    fn set(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    fn alloc(cpus: &str) -> Allocation {
        Allocation {
            cores: set(cpus),
            cpus: set(cpus),
            mems: set("0"),
        }
    }

    fn cpuset_conflict(cpus: &str, missing: &str) -> Conflict {
        Conflict::Cpuset {
            group: Group::new(Hierarchy::CpusetV1, "/ext"),
            cpus: set(cpus),
            mems: set("0"),
            missing_cpus: set(missing),
            missing_mems: CpuSet::new(),
        }
    }

    fn rule_conflict(cpus: Option<&str>, missing: &str) -> Conflict {
        Conflict::Rule {
            line: 1,
            group: Group::new(Hierarchy::CpusetV1, "/users"),
            cpus: cpus.map(set),
            missing_cpus: set(missing),
            missing_mems: CpuSet::new(),
        }
    }

    fn stock(plugins: &str, conflicts: &[Conflict], cpus: &str, inherited: &str) -> Verdict {
        let a = alloc(cpus);
        let inherited = set(inherited);
        without_berth(&StockInputs {
            plugins: TaskPlugins::parse(Some(plugins)),
            conflicts,
            alloc: &a,
            inherited: &inherited,
            kernel_keeps_affinity: true,
        })
    }

    #[test]
    fn task_plugins_parse_with_or_without_prefix() {
        let p = TaskPlugins::parse(Some("task/affinity,task/cgroup"));
        assert!(p.affinity && p.cgroup);
        let p = TaskPlugins::parse(Some("cgroup"));
        assert!(!p.affinity && p.cgroup);
        let p = TaskPlugins::parse(None);
        assert!(!p.affinity && !p.cgroup);
    }

    #[test]
    fn no_conflict_is_fine() {
        let v = stock("task/affinity", &[], "1", "0-1");
        assert_eq!(v.outcome, Outcome::Fine);
    }

    // The notes' table, row by row: slurmd in cpuset {0}, job on CPU 1 (or 0-1).
    #[test]
    fn slurmd_in_a_cpuset_with_affinity_alone_fails() {
        let v = stock("task/affinity", &[cpuset_conflict("0", "1")], "1", "0");
        assert_eq!(v.outcome, Outcome::Fails);
        assert!(
            v.reason.contains("task_g_set_affinity: Invalid argument"),
            "{}",
            v.reason
        );
        assert!(v.reason.contains("cpuset:/ext"), "{}", v.reason);
    }

    #[test]
    fn slurmd_in_a_cpuset_with_affinity_and_cgroup_runs() {
        let v = stock(
            "task/affinity,task/cgroup",
            &[cpuset_conflict("0", "1")],
            "0-1",
            "0",
        );
        assert_eq!(v.outcome, Outcome::Fine);
    }

    #[test]
    fn slurmd_in_a_cpuset_with_cgroup_alone_keeps_the_narrow_mask() {
        let v = stock("task/cgroup", &[cpuset_conflict("0", "1")], "0-1", "0");
        assert_eq!(v.outcome, Outcome::WrongCpus);
        assert!(
            v.reason.contains("only on CPUs 0 of the allocated 0-1"),
            "{}",
            v.reason
        );
        // A disjoint allocation: the kernel falls back to the step's cpuset.
        let v = stock("task/cgroup", &[cpuset_conflict("0", "1")], "1", "0");
        assert_eq!(v.outcome, Outcome::Fine);
    }

    #[test]
    fn an_old_kernel_does_not_keep_the_mask() {
        let a = alloc("0-1");
        let inherited = set("0");
        let v = without_berth(&StockInputs {
            plugins: TaskPlugins::parse(Some("task/cgroup")),
            conflicts: &[cpuset_conflict("0", "1")],
            alloc: &a,
            inherited: &inherited,
            kernel_keeps_affinity: false,
        });
        assert_eq!(v.outcome, Outcome::Fine);
    }

    #[test]
    fn cgrules_rule_fails_affinity_and_misplaces_cgroup() {
        let c = [rule_conflict(Some("0"), "1")];
        assert_eq!(
            stock("task/affinity", &c, "1", "0-1").outcome,
            Outcome::Fails
        );
        let v = stock("task/affinity,task/cgroup", &c, "1", "0-1");
        assert_eq!(v.outcome, Outcome::WrongCpus);
        assert!(
            v.reason
                .contains("run on CPUs 0 instead of the allocated 1"),
            "{}",
            v.reason
        );
        assert_eq!(
            stock("task/cgroup", &c, "1", "0-1").outcome,
            Outcome::WrongCpus
        );
        // A destination that does not exist moves nothing.
        let none = [rule_conflict(None, "1")];
        assert_eq!(
            stock("task/cgroup", &none, "1", "0-1").outcome,
            Outcome::Fine
        );
    }

    #[test]
    fn narrowed_affinity_matters_only_without_task_affinity() {
        let c = [Conflict::Affinity {
            affinity: set("0"),
            missing_cpus: set("1"),
        }];
        assert_eq!(
            stock("task/affinity", &c, "0-1", "0").outcome,
            Outcome::Fine
        );
        assert_eq!(
            stock("task/cgroup", &c, "0-1", "0").outcome,
            Outcome::WrongCpus
        );
        assert_eq!(
            stock("task/none", &c, "0-1", "0").outcome,
            Outcome::WrongCpus
        );
    }

    #[test]
    fn the_worst_conflict_decides_and_names_its_reason() {
        let c = [
            Conflict::Affinity {
                affinity: set("0"),
                missing_cpus: set("1"),
            },
            cpuset_conflict("0", "1"),
        ];
        let v = stock("task/affinity", &c, "1", "0");
        assert_eq!(v.outcome, Outcome::Fails);
        assert!(
            !v.reason.contains("binds each task explicitly"),
            "{}",
            v.reason
        );
    }

    fn plan(policy: CpusetPolicy, conflicts: Vec<Conflict>, refusal: Option<&str>) -> Plan {
        Plan {
            policy,
            actions: if refusal.is_none() && !conflicts.is_empty() {
                vec![Action::ResetAffinity { cpus: set("0-1") }]
            } else {
                Vec::new()
            },
            conflicts,
            refusal: refusal.map(String::from),
            forbidden: Vec::new(),
            allowed_cpus: set("1"),
        }
    }

    #[test]
    fn berth_reconciles_refuses_or_stands_aside() {
        let fails = Verdict::new(Outcome::Fails, "stock reason");
        let c = vec![cpuset_conflict("0", "1")];
        let shares = with_berth(
            &BerthSetup::Active(CpusetPolicy::Shares),
            &fails,
            &plan(CpusetPolicy::Shares, c.clone(), None),
        );
        assert_eq!(shares.outcome, Outcome::Fine);
        assert_eq!(
            shares.reason,
            "cpuset_policy=shares: reset the step's affinity to CPUs 0-1"
        );
        let strict = with_berth(
            &BerthSetup::Active(CpusetPolicy::Strict),
            &fails,
            &plan(CpusetPolicy::Strict, c.clone(), Some("no")),
        );
        assert_eq!(strict.outcome, Outcome::Fails);
        assert!(strict
            .reason
            .starts_with("cpuset_policy=strict refuses the step: no"));
        let off = with_berth(
            &BerthSetup::Active(CpusetPolicy::Off),
            &fails,
            &plan(CpusetPolicy::Off, c.clone(), None),
        );
        assert_eq!(off.outcome, Outcome::Fails);
        assert!(off.reason.ends_with("stock reason"));
        let broken = with_berth(
            &BerthSetup::Broken("bad".into()),
            &fails,
            &plan(CpusetPolicy::Shares, c, None),
        );
        assert_eq!(broken.outcome, Outcome::Fails);
        assert!(broken.reason.starts_with("berth is inactive: bad; "));
        let missing = with_berth(
            &BerthSetup::Missing("/x.so".into()),
            &Verdict::new(Outcome::Fine, "-"),
            &plan(CpusetPolicy::Shares, vec![], None),
        );
        assert_eq!(missing.outcome, Outcome::Fails);
    }

    #[test]
    fn exit_codes_follow_the_worst_finding() {
        let fine = Verdict::new(Outcome::Fine, "");
        let wrong = Verdict::new(Outcome::WrongCpus, "");
        assert_eq!(Status::of(0, 0, Some(&fine)).exit_code(), 0);
        assert_eq!(Status::of(0, 0, None).exit_code(), 0);
        assert_eq!(Status::of(0, 2, Some(&fine)).exit_code(), 1);
        assert_eq!(Status::of(0, 2, Some(&wrong)).exit_code(), 2);
        assert_eq!(Status::of(1, 0, Some(&fine)).exit_code(), 2);
    }
}
