//! `berth doctor`: the node's report (see `crate::doctor`), as text or JSON.
//!
//! Exit status: 0 no conflict; 1 conflicts that berth reconciles; 2 something
//! will fail (a broken berth line, a step that fails or runs on the wrong
//! CPUs even with berth); 3 the report itself could not be made.

use std::path::PathBuf;

use clap::Args;

use crate::cpuset::CpuSet;
use crate::doctor::{self, render, slurm_conf, Request};

/// Exit status when no report could be made (slurm.conf unreadable, ...).
const CANNOT_REPORT: i32 = 3;

/// Run as root on a compute node: Slurm's settings, berth's configuration,
/// the node's topology, every CPU constraint from outside Slurm, and a dry run
/// of what a step meets with and without berth.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// slurm.conf to read [default: $SLURM_CONF, else /etc/slurm/slurm.conf]
    #[arg(long, value_name = "PATH")]
    pub slurm_conf: Option<PathBuf>,
    /// The slurmd node name, when several slurmd run on this host.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The job user for the dry run (cgrules.conf rules are matched against it).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The allocation for the dry run, as Slurm's abstract core indices (e.g. 0-1,4).
    #[arg(long, value_name = "LIST", value_parser = parse_cores, conflicts_with = "job")]
    pub cores: Option<CpuSet>,
    /// A running job: its user and cores on this node (from scontrol), and berth's log lines for it.
    #[arg(long, value_name = "JOBID")]
    pub job: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the table of berth's plugstack.conf keys (Markdown) and exit.
    #[arg(long)]
    pub keys: bool,
}

fn parse_cores(s: &str) -> Result<CpuSet, String> {
    CpuSet::parse(s).map_err(|e| e.to_string())
}

pub fn run(args: DoctorArgs) -> i32 {
    if args.keys {
        print!("{}", crate::config::keys_markdown());
        return 0;
    }
    let req = Request {
        slurm_conf: args
            .slurm_conf
            .unwrap_or_else(slurm_conf::default_slurm_conf),
        node: args.node,
        user: args.user,
        cores: args.cores,
        job: args.job,
    };
    let report = match doctor::examine(&req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth doctor: {e}");
            return CANNOT_REPORT;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("berth doctor: cannot print JSON: {e}");
                return CANNOT_REPORT;
            }
        }
    } else {
        print!("{}", render::text(&report));
    }
    report.exit_code
}
