//! The `berth` admin command: one subcommand per concern, each in its own file.

pub mod doctor;
pub mod gc;
pub mod sif;

use clap::{Parser, Subcommand};

/// berth: run Slurm job steps in SIF images, with cpusets reconciled.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `berth`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, check and build SIF images.
    Sif(sif::SifArgs),
    /// Report how this node's Slurm, berth and CPU constraints fit together.
    Doctor(doctor::DoctorArgs),
    /// Release idle images, dead holders and stale step views.
    Gc(gc::GcArgs),
}

/// Parses the command line, runs the subcommand, and returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Sif(args) => sif::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Gc(args) => gc::run(args),
    }
}
