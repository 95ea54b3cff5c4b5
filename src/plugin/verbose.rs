//! `srun -v` shows berth's decision line for the step.
//!
//! slurmstepd's log lines reach srun only at error level (22.05; `--slurmd-debug`
//! aside), so an info line never shows with `srun -v`. Instead:
//! - srun (local context, init_post_opt): when srun runs verbose (`-v`, `--verbose`
//!   in its own argv, or the `SLURM_DEBUG` input variable), berth puts [`VAR`] in
//!   srun's own environment, which srun copies into the job environment it sends;
//! - slurmstepd (task_init, in the task's child, whose fd 2 goes to srun): local task
//!   0 writes `berth: job J.S: <decision line>` to stderr, and every task removes
//!   [`VAR`] from its environment so the program never sees it.
//!
//! The name starts with `SLURM_` because srun passes `SLURM_*` variables even with
//! `--export=NONE` or an explicit `--export` list.

use crate::spank::{Spank, SpankResult};

/// The variable that carries the request from srun to slurmstepd.
pub const VAR: &str = "SLURM_BERTH_VERBOSE";

/// srun's short options that take their value as the next argument (`-n 2`).
const SHORT_WITH_VALUE: &str = "AbBcCdDeGiJLmMnNopqrStTwWx";

/// srun's long options that take a value, given as the next argument when written
/// without `=` (`--ntasks 2`). From `srun --help` (22.05) plus later additions.
const LONG_WITH_VALUE: &[&str] = &[
    "account",
    "acctg-freq",
    "bb",
    "bbf",
    "bcast",
    "bcast-exclude",
    "begin",
    "chdir",
    "cluster-constraint",
    "clusters",
    "comment",
    "constraint",
    "container",
    "container-env",
    "container-mounts",
    "container-workdir",
    "container-image",
    "container-name",
    "core-spec",
    "cores-per-socket",
    "cpu-bind",
    "cpu-freq",
    "cpus-per-gpu",
    "cpus-per-task",
    "deadline",
    "delay-boot",
    "dependency",
    "distribution",
    "epilog",
    "error",
    "exclude",
    "export",
    "extra-node-info",
    "gpu-bind",
    "gpu-freq",
    "gpus",
    "gpus-per-node",
    "gpus-per-socket",
    "gpus-per-task",
    "gres",
    "gres-flags",
    "het-group",
    "hint",
    "input",
    "job-name",
    "jobid",
    "licenses",
    "mail-type",
    "mail-user",
    "mcs-label",
    "mem",
    "mem-bind",
    "mem-per-cpu",
    "mem-per-gpu",
    "mincpus",
    "mpi",
    "nodefile",
    "nodelist",
    "nodes",
    "ntasks",
    "ntasks-per-core",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "ntasks-per-socket",
    "output",
    "partition",
    "power",
    "priority",
    "profile",
    "prolog",
    "qos",
    "relative",
    "reservation",
    "signal",
    "slurmd-debug",
    "sockets-per-node",
    "switches",
    "task-epilog",
    "task-prolog",
    "thread-spec",
    "threads",
    "threads-per-core",
    "time",
    "time-min",
    "tmp",
    "tres-bind",
    "tres-per-task",
    "uid",
    "gid",
    "wait",
    "wckey",
];

/// Whether srun's arguments (argv[1..], up to the command it runs) or its
/// `SLURM_DEBUG` input variable ask for verbose output.
pub fn srun_is_verbose<S: AsRef<str>>(args: &[S], slurm_debug: Option<&str>) -> bool {
    if slurm_debug.is_some_and(|v| v.trim().parse::<i64>().is_ok_and(|n| n > 0)) {
        return true;
    }
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_ref();
        if a == "--" || !a.starts_with('-') || a == "-" {
            return false; // the command starts here
        }
        if let Some(long) = a.strip_prefix("--") {
            if long == "verbose" {
                return true;
            }
            if !long.contains('=') && LONG_WITH_VALUE.contains(&long) {
                i += 1;
            }
        } else {
            // a cluster of short options: `-lv`, `-n2`, `-n 2`
            for (k, ch) in a[1..].char_indices() {
                if ch == 'v' {
                    return true;
                }
                if SHORT_WITH_VALUE.contains(ch) {
                    if k + ch.len_utf8() == a.len() - 1 {
                        i += 1; // the value is the next argument
                    }
                    break;
                }
            }
        }
        i += 1;
    }
    false
}

/// srun's own arguments, from /proc/self/cmdline.
fn own_args() -> Vec<String> {
    std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .skip(1)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// srun, before it builds the job environment: asks slurmstepd for the decision line
/// when srun runs verbose.
pub fn request_if_verbose() {
    let debug = std::env::var("SLURM_DEBUG").ok();
    if srun_is_verbose(&own_args(), debug.as_deref()) {
        std::env::set_var(VAR, "1");
    }
}

/// slurmstepd, task_init (the task's child, as the user): writes the decision line to
/// stderr for local task 0 when srun asked, and removes the request from the task's
/// environment.
pub fn in_task(spank: &mut dyn Spank, label: &str, line: Option<&str>) -> SpankResult<()> {
    if spank.getenv(VAR)?.is_none() {
        return Ok(());
    }
    if let (Some(line), Ok(0)) = (line, spank.task_id()) {
        use std::io::Write;
        let _ = write!(
            std::io::stderr(),
            "{}",
            crate::spank::log::user_line(&format!("{label}: {line}"))
        );
    }
    spank.unsetenv(VAR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spank::fake::FakeSpank;

    fn v(args: &str) -> bool {
        let args: Vec<&str> = args.split_whitespace().collect();
        srun_is_verbose(&args, None)
    }

    #[test]
    fn verbose_flags_before_the_command_count() {
        assert!(v("-v hostname"));
        assert!(v("-n2 -v hostname"));
        assert!(v("-n 2 --verbose hostname"));
        assert!(v("-lv hostname"));
        assert!(v("-vv true"));
        assert!(v("--ntasks 2 -v true"));
        assert!(v("--export=NONE -v true"));
    }

    #[test]
    fn the_commands_own_flags_and_option_values_do_not() {
        assert!(!v("hostname -v"));
        assert!(!v("-n2 ls -v"));
        assert!(!v("-J -v true")); // -v is the job name
        assert!(!v("--job-name -v true"));
        assert!(!v("-n2 -- sh -v"));
        assert!(!v("-Jv true")); // job name "v"
        assert!(!v(""));
    }

    #[test]
    fn slurm_debug_counts_when_positive() {
        assert!(srun_is_verbose::<&str>(&[], Some("1")));
        assert!(srun_is_verbose::<&str>(&[], Some("2")));
        assert!(!srun_is_verbose::<&str>(&[], Some("0")));
        assert!(!srun_is_verbose::<&str>(&[], Some("x")));
    }

    #[test]
    fn the_task_loses_the_variable() {
        let mut spank = FakeSpank::remote();
        spank.task_id = Some(1);
        spank.env.insert(VAR.into(), "1".into());
        in_task(&mut spank, "job 42.0", Some("line")).unwrap();
        assert!(!spank.env.contains_key(VAR));
    }
}
