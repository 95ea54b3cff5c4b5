//! The decisions: from facts, an allocation and the policy to a plan. Pure:
//! no I/O, so every case is a unit test and `berth doctor` can print the plan
//! it would apply.

use crate::cgroup::{CpusetState, Group, Hierarchy, V1_DEFAULT_SHARES, V2_DEFAULT_WEIGHT};
use crate::config::CpusetPolicy;
use crate::cpuset::CpuSet;

use super::facts::{Allocation, Facts};

/// Something outside Slurm that would keep the step off its allocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conflict {
    /// slurmstepd (from slurmd) is in a cpuset that lacks CPUs or memory
    /// nodes of the allocation.
    Cpuset {
        group: Group,
        cpus: CpuSet,
        mems: CpuSet,
        missing_cpus: CpuSet,
        missing_mems: CpuSet,
    },
    /// slurmstepd's CPU affinity (e.g. slurmd started under taskset) lacks
    /// CPUs of the allocation.
    Affinity {
        affinity: CpuSet,
        missing_cpus: CpuSet,
    },
    /// A running cgrulesengd will move the user's processes into this group.
    Rule {
        line: usize,
        group: Group,
        /// The group's CPUs, when it exists.
        cpus: Option<CpuSet>,
        missing_cpus: CpuSet,
        missing_mems: CpuSet,
    },
}

impl Conflict {
    pub fn describe(&self) -> String {
        match self {
            Conflict::Cpuset {
                group,
                cpus,
                mems,
                missing_cpus,
                missing_mems,
            } => {
                let mut s =
                    format!("slurmd's cpuset {group} (CPUs {cpus}, memory nodes {mems}) lacks");
                if !missing_cpus.is_empty() {
                    s += &format!(" CPUs {missing_cpus}");
                }
                if !missing_mems.is_empty() {
                    if !missing_cpus.is_empty() {
                        s += " and";
                    }
                    s += &format!(" memory nodes {missing_mems}");
                }
                s
            }
            Conflict::Affinity {
                affinity,
                missing_cpus,
            } => {
                format!("slurmd's CPU affinity {affinity} lacks CPUs {missing_cpus}")
            }
            Conflict::Rule {
                line,
                group,
                cpus,
                missing_cpus,
                ..
            } => {
                let cpus = cpus
                    .as_ref()
                    .map_or("not yet created".to_string(), |c| format!("CPUs {c}"));
                let lack = if missing_cpus.is_empty() {
                    "and would undo Slurm's binding".to_string()
                } else {
                    format!("lacking CPUs {missing_cpus}")
                };
                format!("cgrules.conf line {line} moves the user's processes to {group} ({cpus}) {lack}")
            }
        }
    }
}

/// One change, in the order it is applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Ask cgrulesengd to leave slurmstepd, its threads and the tasks it
    /// forks where they are.
    RegisterWithCgred,
    /// Widen a cpuset (each group root first) so it holds the allocation;
    /// restored when no step needs it any more.
    Widen {
        group: Group,
        cpus: CpuSet,
        mems: CpuSet,
    },
    /// Move slurmstepd (all its threads) into this cpuset group.
    MoveToCpuset { group: Group },
    /// Put slurmstepd (and so its tasks) in this group for the cpu
    /// controller; create it if missing; set its weight if given.
    JoinCpuGroup {
        group: Group,
        create: bool,
        weight: Option<u64>,
    },
    /// Set the affinity of every slurmstepd thread (the kernel remembers a
    /// mask set under slurmd, e.g. by its topology scan on kernels >= 6.2).
    ResetAffinity { cpus: CpuSet },
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::RegisterWithCgred => "registered the step with cgrulesengd as unchanged".into(),
            Action::Widen { group, cpus, mems } => {
                format!("widened {group} to CPUs {cpus} memory nodes {mems}")
            }
            Action::MoveToCpuset { group } => format!("moved the step to {group}"),
            Action::JoinCpuGroup { group, weight, .. } => match weight {
                Some(w) => format!("kept its weight as {group} {}={w}", weight_file(group)),
                None => format!("kept its weight in {group}"),
            },
            Action::ResetAffinity { cpus } => format!("reset the step's affinity to CPUs {cpus}"),
        }
    }
}

fn weight_file(group: &Group) -> &'static str {
    match group.hierarchy {
        Hierarchy::Unified => "cpu.weight",
        _ => "cpu.shares",
    }
}

/// What berth will do for the step, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub policy: CpusetPolicy,
    pub conflicts: Vec<Conflict>,
    pub actions: Vec<Action>,
    /// Strict policy: the step must fail with this message.
    pub refusal: Option<String>,
    /// After the fork: groups a task must not be found in (moved there by
    /// cgrulesengd), and the CPUs its affinity must stay within.
    pub forbidden: Vec<Group>,
    pub allowed_cpus: CpuSet,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.conflicts.is_empty()
    }

    /// The one log line for the step (without berth's `job J.S:` prefix).
    pub fn summary(&self, alloc: &Allocation) -> String {
        if self.conflicts.is_empty() {
            return format!("no external cpuset constraint on CPUs {}", alloc.cpus);
        }
        let conflicts: Vec<String> = self.conflicts.iter().map(Conflict::describe).collect();
        let head = format!(
            "cpuset conflict: {} (allocation: CPUs {}, memory nodes {})",
            conflicts.join("; "),
            alloc.cpus,
            alloc.mems
        );
        if let Some(refusal) = &self.refusal {
            return format!("{head}; cpuset_policy=strict: step refused: {refusal}");
        }
        if self.policy == CpusetPolicy::Off {
            return format!("{head}; cpuset_policy=off: left as is");
        }
        let actions: Vec<String> = self.actions.iter().map(Action::describe).collect();
        format!(
            "{head}; cpuset_policy={}: {}",
            self.policy,
            actions.join(", ")
        )
    }
}

/// The weight to give a group whose cpuset allowed `allowed` of `total`
/// CPUs, relative to the hierarchy's default.
pub fn proportional_weight(allowed: usize, total: usize, hierarchy: Hierarchy) -> u64 {
    let (default, min) = match hierarchy {
        Hierarchy::Unified => (V2_DEFAULT_WEIGHT, 1),
        _ => (V1_DEFAULT_SHARES, 2),
    };
    if total == 0 {
        return default;
    }
    ((default * allowed as u64) / total as u64).max(min)
}

fn conflicts(facts: &Facts, alloc: &Allocation) -> Vec<Conflict> {
    let mut out = Vec::new();
    let p = &facts.placement;
    if let (Some(group), Some(state)) = (&p.cpuset_group, &p.cpuset) {
        let missing_cpus = alloc.cpus.difference(&state.effective_cpus);
        let missing_mems = alloc.mems.difference(&state.effective_mems);
        if !missing_cpus.is_empty() || !missing_mems.is_empty() {
            out.push(Conflict::Cpuset {
                group: group.clone(),
                cpus: state.effective_cpus.clone(),
                mems: state.effective_mems.clone(),
                missing_cpus,
                missing_mems,
            });
        }
    }
    let missing = alloc.cpus.difference(&p.affinity);
    if !missing.is_empty() {
        out.push(Conflict::Affinity {
            affinity: p.affinity.clone(),
            missing_cpus: missing,
        });
    }
    if let Some(rule) = facts.rule.as_ref().filter(|r| r.daemon) {
        if let Some(dest) = &rule.cpuset {
            let hierarchy = p
                .cpuset_group
                .as_ref()
                .map_or(Hierarchy::CpusetV1, |g| g.hierarchy);
            let state = rule.cpuset_state.as_ref();
            out.push(Conflict::Rule {
                line: dest.line,
                group: Group::new(hierarchy, &dest.path),
                cpus: state.map(|s| s.effective_cpus.clone()),
                missing_cpus: state.map_or(alloc.cpus.clone(), |s| {
                    alloc.cpus.difference(&s.effective_cpus)
                }),
                missing_mems: state
                    .map_or(CpuSet::new(), |s| alloc.mems.difference(&s.effective_mems)),
            });
        } else if let Some(dest) = &rule.cpu {
            // A cpu-only rule moves nothing out of its cpuset; it only needs
            // registering so it does not race Slurm's own placement.
            let _ = dest;
        }
    }
    out
}

/// The refusal for the strict policy: names the external group, its CPUs,
/// the allocation and the setting that would let the step run.
fn refusal(conflicts: &[Conflict], alloc: &Allocation) -> String {
    let what: Vec<String> = conflicts.iter().map(Conflict::describe).collect();
    format!(
        "this node imposes a cpuset outside Slurm: {}; the step was allocated CPUs {} (memory nodes {}). \
         Ask your administrator to set cpuset_policy=shares or cpuset_policy=widen on berth's plugstack.conf line \
         to run such steps",
        what.join("; "),
        alloc.cpus,
        alloc.mems
    )
}

/// The cpu group that keeps the external group's intent as a weight.
fn weight_action(
    facts: &Facts,
    external: &Group,
    external_cpus: Option<&CpuSet>,
) -> Option<Action> {
    let hierarchy = if facts.mounts.cpu_v1.is_some() {
        Hierarchy::CpuV1
    } else if facts.mounts.unified.is_some() {
        Hierarchy::Unified
    } else {
        return None;
    };
    // v1: the same path in the cpu hierarchy. v2 has one tree, where that
    // path is the narrow cpuset itself: weigh a sibling of the root instead.
    let group = match hierarchy {
        Hierarchy::Unified => Group::new(
            hierarchy,
            &format!("/berth-weight{}", external.path.replace('/', "-")),
        ),
        _ => external.in_hierarchy(hierarchy),
    };
    let exists = hierarchy != Hierarchy::Unified && facts.live_weights.contains_key(&external.path);
    let configured = facts.configured_weights.contains_key(&external.path);
    let live_default = match hierarchy {
        Hierarchy::Unified => V2_DEFAULT_WEIGHT,
        _ => V1_DEFAULT_SHARES,
    };
    let has_weight = configured
        || hierarchy != Hierarchy::Unified
            && facts
                .live_weights
                .get(&external.path)
                .is_some_and(|&w| w != live_default);
    let weight = if has_weight {
        None
    } else {
        let allowed = external_cpus.map_or(facts.node_cpus.len(), |c| {
            c.intersection(&facts.node_cpus).len()
        });
        Some(proportional_weight(
            allowed,
            facts.node_cpus.len(),
            hierarchy,
        ))
    };
    Some(Action::JoinCpuGroup {
        group,
        create: !exists,
        weight,
    })
}

/// Each group from the root's child down to `group` that lacks part of the
/// allocation, with its widened sets (the root is never narrowed).
fn widen_lineage(group: &Group, state: Option<&CpusetState>, alloc: &Allocation) -> Vec<Action> {
    let Some(state) = state else {
        return Vec::new();
    };
    // Ancestors must hold whatever a child holds; widening every level from
    // the top to the same union is safe whatever they held before.
    let cpus = state.cpus.union(&alloc.cpus);
    let mems = state.mems.union(&alloc.mems);
    group
        .lineage()
        .into_iter()
        .filter(|g| !g.is_root())
        .map(|g| Action::Widen {
            group: g,
            cpus: cpus.clone(),
            mems: mems.clone(),
        })
        .collect()
}

/// Decides what to do. `facts` are about slurmstepd before any task exists.
pub fn plan(facts: &Facts, alloc: &Allocation, policy: CpusetPolicy) -> Plan {
    let conflicts = conflicts(facts, alloc);
    let mut plan = Plan {
        policy,
        conflicts: conflicts.clone(),
        actions: Vec::new(),
        refusal: None,
        forbidden: Vec::new(),
        allowed_cpus: alloc.cpus.clone(),
    };
    if conflicts.is_empty() || policy == CpusetPolicy::Off {
        return plan;
    }
    if policy == CpusetPolicy::Strict {
        plan.refusal = Some(refusal(&conflicts, alloc));
        return plan;
    }
    let root = facts
        .placement
        .cpuset_group
        .as_ref()
        .map(|g| Group::new(g.hierarchy, "/"));
    let mut affinity_target = facts.node_cpus.clone();
    for conflict in &conflicts {
        match (conflict, policy) {
            (Conflict::Rule { .. }, _) => plan.actions.push(Action::RegisterWithCgred),
            (Conflict::Cpuset { group, .. }, CpusetPolicy::Shares) => {
                if let Some(root) = &root {
                    plan.actions.push(Action::MoveToCpuset {
                        group: root.clone(),
                    });
                }
                let cpus = facts.placement.cpuset.as_ref().map(|s| &s.effective_cpus);
                plan.actions.extend(weight_action(facts, group, cpus));
                plan.forbidden.push(group.clone());
            }
            (Conflict::Cpuset { group, .. }, _) => {
                plan.actions
                    .extend(widen_lineage(group, facts.placement.cpuset.as_ref(), alloc));
                if let Some(s) = &facts.placement.cpuset {
                    affinity_target = s.effective_cpus.union(&alloc.cpus);
                }
            }
            (Conflict::Affinity { .. }, _) => {}
        }
    }
    // cgrulesengd's destination: kept as a weight (shares) or widened and
    // joined (widen); either way the step is registered first.
    for conflict in &conflicts {
        if let Conflict::Rule { group, cpus, .. } = conflict {
            let state = facts.rule.as_ref().and_then(|r| r.cpuset_state.as_ref());
            if policy == CpusetPolicy::Shares {
                plan.actions
                    .extend(weight_action(facts, group, cpus.as_ref()));
                plan.forbidden.push(group.clone());
            } else if state.is_some() {
                plan.actions.extend(widen_lineage(group, state, alloc));
                plan.actions.push(Action::MoveToCpuset {
                    group: group.clone(),
                });
                if let Some(s) = state {
                    affinity_target = s.effective_cpus.union(&alloc.cpus);
                }
            }
        }
    }
    plan.actions.push(Action::ResetAffinity {
        cpus: affinity_target,
    });
    dedup(&mut plan.actions);
    plan
}

fn dedup(actions: &mut Vec<Action>) {
    let mut seen = Vec::new();
    actions.retain(|a| {
        if seen.contains(a) {
            false
        } else {
            seen.push(a.clone());
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::rules::{Destination, Identity};
    use crate::cgroup::Mounts;
    use crate::reconcile::facts::{Placement, RuleFacts};
    use crate::topology::Topology;

    fn set(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    fn state(cpus: &str, mems: &str) -> CpusetState {
        CpusetState {
            cpus: set(cpus),
            mems: set(mems),
            effective_cpus: set(cpus),
            effective_mems: set(mems),
        }
    }

    /// slurmstepd on a 2-socket, 4-NUMA, SMT machine (`pack:2 numa:2 core:4 pu:2`).
    fn facts(cpuset_path: &str, cpuset: CpusetState, affinity: &str) -> Facts {
        Facts {
            node_cpus: set("0-31"),
            node_mems: set("0-3"),
            mounts: Mounts {
                cpuset_v1: Some("/sys/fs/cgroup/cpuset".into()),
                cpu_v1: Some("/sys/fs/cgroup/cpu".into()),
                unified: None,
            },
            placement: Placement {
                pid: 100,
                cpuset_group: Some(Group::new(Hierarchy::CpusetV1, cpuset_path)),
                cpuset: Some(cpuset),
                cpu_group: Some(Group::new(Hierarchy::CpuV1, "/")),
                affinity: set(affinity),
            },
            user: Identity {
                uid: 5002,
                user: "alice".into(),
                gid: 5002,
                group: "alice".into(),
                groups: vec![],
            },
            rule: None,
            configured_weights: Default::default(),
            live_weights: Default::default(),
        }
    }

    fn alloc(cores: &str) -> Allocation {
        let t = Topology::synthetic("pack:2 numa:2 core:4 pu:2").unwrap();
        Allocation::resolve(&set(cores), &t).unwrap()
    }

    #[test]
    fn an_unconstrained_step_needs_nothing() {
        let f = facts("/", state("0-31", "0-3"), "0-31");
        assert!(f.unconstrained());
        let p = plan(&f, &alloc("4-5"), CpusetPolicy::Shares);
        assert!(p.is_noop());
        assert!(p.actions.is_empty());
        assert_eq!(
            p.summary(&alloc("4-5")),
            "no external cpuset constraint on CPUs 8-11"
        );
    }

    #[test]
    fn a_covering_external_cpuset_is_no_conflict() {
        let f = facts("/ext", state("0-15", "0-1"), "0-15");
        assert!(!f.unconstrained());
        assert!(plan(&f, &alloc("0-3"), CpusetPolicy::Shares).is_noop());
    }

    #[test]
    fn shares_leaves_a_narrow_cpuset_for_the_root_and_weighs_the_group() {
        let f = facts("/ext", state("0-7", "0"), "0-7");
        let a = alloc("4-5"); // CPUs 8-11 on NUMA node 1
        let p = plan(&f, &a, CpusetPolicy::Shares);
        assert_eq!(
            p.conflicts[0],
            Conflict::Cpuset {
                group: Group::new(Hierarchy::CpusetV1, "/ext"),
                cpus: set("0-7"),
                mems: set("0"),
                missing_cpus: set("8-11"),
                missing_mems: set("1"),
            }
        );
        assert!(matches!(p.conflicts[1], Conflict::Affinity { .. }));
        assert_eq!(
            p.actions,
            vec![
                Action::MoveToCpuset {
                    group: Group::new(Hierarchy::CpusetV1, "/")
                },
                Action::JoinCpuGroup {
                    group: Group::new(Hierarchy::CpuV1, "/ext"),
                    create: true,
                    weight: Some(256)
                },
                Action::ResetAffinity { cpus: set("0-31") },
            ]
        );
        assert_eq!(p.forbidden, vec![Group::new(Hierarchy::CpusetV1, "/ext")]);
        let line = p.summary(&a);
        assert!(line.starts_with("cpuset conflict: slurmd's cpuset cpuset:/ext (CPUs 0-7, memory nodes 0) lacks CPUs 8-11 and memory nodes 1"), "{line}");
        assert!(line.contains("cpuset_policy=shares: moved the step to cpuset:/, kept its weight as cpu:/ext cpu.shares=256, reset"), "{line}");
    }

    #[test]
    fn shares_keeps_a_weight_the_site_configured() {
        let mut f = facts("/ext", state("0-7", "0"), "0-31");
        f.configured_weights.insert("/ext".into(), 300);
        f.live_weights.insert("/ext".into(), 300);
        let p = plan(&f, &alloc("4"), CpusetPolicy::Shares);
        assert!(p.actions.contains(&Action::JoinCpuGroup {
            group: Group::new(Hierarchy::CpuV1, "/ext"),
            create: false,
            weight: None
        }));
    }

    #[test]
    fn widen_adds_the_allocation_through_the_parents() {
        let f = facts("/site/ext", state("0-7", "0"), "0-7");
        let p = plan(&f, &alloc("4"), CpusetPolicy::Widen);
        assert_eq!(
            p.actions,
            vec![
                Action::Widen {
                    group: Group::new(Hierarchy::CpusetV1, "/site"),
                    cpus: set("0-9"),
                    mems: set("0-1")
                },
                Action::Widen {
                    group: Group::new(Hierarchy::CpusetV1, "/site/ext"),
                    cpus: set("0-9"),
                    mems: set("0-1")
                },
                Action::ResetAffinity { cpus: set("0-9") },
            ]
        );
    }

    #[test]
    fn strict_refuses_naming_group_cpus_allocation_and_setting() {
        let f = facts("/ext", state("0", "0"), "0");
        let p = plan(&f, &alloc("1"), CpusetPolicy::Strict);
        assert!(p.actions.is_empty());
        let r = p.refusal.unwrap();
        assert!(r.contains("cpuset:/ext (CPUs 0, memory nodes 0)"), "{r}");
        assert!(r.contains("allocated CPUs 2-3"), "{r}");
        assert!(
            r.contains("cpuset_policy=shares or cpuset_policy=widen"),
            "{r}"
        );
    }

    #[test]
    fn off_reports_but_does_nothing() {
        let f = facts("/ext", state("0", "0"), "0");
        let p = plan(&f, &alloc("1"), CpusetPolicy::Off);
        assert!(p.actions.is_empty() && p.refusal.is_none());
        assert!(p
            .summary(&alloc("1"))
            .ends_with("cpuset_policy=off: left as is"));
    }

    #[test]
    fn a_narrow_affinity_alone_is_reset() {
        let f = facts("/", state("0-31", "0-3"), "0");
        let p = plan(&f, &alloc("1"), CpusetPolicy::Shares);
        assert_eq!(
            p.conflicts,
            vec![Conflict::Affinity {
                affinity: set("0"),
                missing_cpus: set("2-3")
            }]
        );
        assert_eq!(p.actions, vec![Action::ResetAffinity { cpus: set("0-31") }]);
    }

    fn with_rule(mut f: Facts, daemon: bool, dest_state: Option<CpusetState>) -> Facts {
        f.rule = Some(RuleFacts {
            cpuset: Some(Destination {
                path: "/users".into(),
                line: 3,
                process: None,
                per_process: false,
            }),
            cpuset_state: dest_state,
            cpu: None,
            daemon,
        });
        f
    }

    #[test]
    fn a_cgrules_rule_counts_only_while_the_daemon_runs() {
        let f = with_rule(
            facts("/", state("0-31", "0-3"), "0-31"),
            false,
            Some(state("0", "0")),
        );
        assert!(f.unconstrained());
        assert!(plan(&f, &alloc("1"), CpusetPolicy::Shares).is_noop());
    }

    #[test]
    fn shares_registers_with_cgred_and_weighs_the_rules_group() {
        let f = with_rule(
            facts("/", state("0-31", "0-3"), "0-31"),
            true,
            Some(state("0-7", "0")),
        );
        let p = plan(&f, &alloc("1"), CpusetPolicy::Shares);
        assert_eq!(p.actions[0], Action::RegisterWithCgred);
        assert!(p.actions.contains(&Action::JoinCpuGroup {
            group: Group::new(Hierarchy::CpuV1, "/users"),
            create: true,
            weight: Some(256)
        }));
        assert_eq!(p.forbidden, vec![Group::new(Hierarchy::CpusetV1, "/users")]);
        let line = p.summary(&alloc("1"));
        assert!(line.contains("cgrules.conf line 3 moves the user's processes to cpuset:/users (CPUs 0-7) and would undo Slurm's binding"), "{line}");
    }

    #[test]
    fn widen_on_a_rule_widens_and_joins_the_rules_group() {
        let f = with_rule(
            facts("/", state("0-31", "0-3"), "0-31"),
            true,
            Some(state("0", "0")),
        );
        let p = plan(&f, &alloc("1"), CpusetPolicy::Widen);
        assert_eq!(
            p.actions,
            vec![
                Action::RegisterWithCgred,
                Action::Widen {
                    group: Group::new(Hierarchy::CpusetV1, "/users"),
                    cpus: set("0,2-3"),
                    mems: set("0")
                },
                Action::MoveToCpuset {
                    group: Group::new(Hierarchy::CpusetV1, "/users")
                },
                Action::ResetAffinity { cpus: set("0,2-3") },
            ]
        );
    }

    #[test]
    fn v2_weights_use_cpu_weight() {
        assert_eq!(proportional_weight(1, 2, Hierarchy::Unified), 50);
        assert_eq!(proportional_weight(1, 2, Hierarchy::CpuV1), 512);
        assert_eq!(proportional_weight(0, 64, Hierarchy::CpuV1), 2);
        let mut f = facts("/slice/ext", state("0-3", "0"), "0-31");
        f.placement.cpuset_group = Some(Group::new(Hierarchy::Unified, "/slice/ext"));
        f.mounts = Mounts {
            cpuset_v1: None,
            cpu_v1: None,
            unified: Some("/sys/fs/cgroup".into()),
        };
        let p = plan(&f, &alloc("4"), CpusetPolicy::Shares);
        assert!(p.actions.contains(&Action::MoveToCpuset {
            group: Group::new(Hierarchy::Unified, "/")
        }));
        assert!(p.actions.contains(&Action::JoinCpuGroup {
            group: Group::new(Hierarchy::Unified, "/berth-weight-slice-ext"),
            create: true,
            weight: Some(12)
        }));
    }

    #[test]
    fn the_plan_serializes_for_berth_doctor() {
        let f = facts("/ext", state("0", "0"), "0");
        let p = plan(&f, &alloc("1"), CpusetPolicy::Shares);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["policy"], "shares");
        assert_eq!(json["conflicts"][0]["kind"], "cpuset");
        assert_eq!(json["conflicts"][0]["missing_cpus"], "2-3");
        assert_eq!(json["actions"][0]["action"], "move_to_cpuset");
        let back: Plan = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let fj = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<Facts>(&fj).unwrap(), f);
    }
}
