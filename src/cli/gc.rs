//! `berth gc`: releases what no step will release (see `container::cache`):
//! images idle past `mount_idle_seconds`, holders whose slurmstepd is gone
//! (pid and start time, field 22 of /proc/PID/stat, no longer match), idle
//! step views, and at once images whose file was deleted. It takes the
//! plugin's locks, so an image in use is never unmounted. Run by
//! `dist/systemd/berth-gc.timer`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::container::cache::{Cache, Reaped};

/// Run as root on a compute node. Exit status 0, also when nothing was idle;
/// 1 when the cache could not be read or changed.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// berth's run_dir (plugstack.conf's `run_dir=`).
    #[arg(long, value_name = "PATH", default_value = "/run/berth")]
    pub run_dir: PathBuf,
    /// Seconds an image stays mounted with no live holder (plugstack.conf's `mount_idle_seconds=`).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub idle_seconds: u64,
    /// List what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: GcArgs) -> i32 {
    if !args.run_dir.join("images").exists() {
        return 0;
    }
    let cache = Cache::new(&args.run_dir);
    let idle = Duration::from_secs(args.idle_seconds);
    let result = if args.dry_run {
        cache.plan_reap(idle)
    } else {
        cache.reap(idle)
    };
    match result {
        Ok(reaped) => {
            print!("{}", lines(&reaped, args.dry_run));
            0
        }
        Err(e) => {
            eprintln!("berth gc: {e}");
            1
        }
    }
}

/// One line per action.
fn lines(r: &Reaped, dry: bool) -> String {
    let verb = if dry { "would " } else { "" };
    let mut out = String::new();
    if r.dead_holders > 0 {
        out += &format!("{verb}drop {} dead holder(s)\n", r.dead_holders);
    }
    if r.views > 0 {
        out += &format!("{verb}release {} idle step view(s)\n", r.views);
    }
    for root in &r.unmounted {
        out += &format!("{verb}unmount {}\n", root.display());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_action() {
        let r = Reaped {
            unmounted: vec![PathBuf::from("/run/berth/images/k/root")],
            dead_holders: 2,
            views: 0,
        };
        assert_eq!(
            lines(&r, true),
            "would drop 2 dead holder(s)\nwould unmount /run/berth/images/k/root\n"
        );
        assert_eq!(lines(&Reaped::default(), false), "");
    }
}
