//! berth: a Slurm SPANK plugin that reconciles external cpusets with Slurm's
//! allocation and runs job steps in SIF images.
//!
//! Data moves one way: Slurm hook -> `spank` (the only code that talks to Slurm)
//! -> `plugin` (which hook does what, per Slurm context) -> facts (`topology`,
//! `cgroup`, `sif`) -> pure plans (`reconcile::plan`) -> side effects
//! (`reconcile::apply`, `container`) -> one log line per decision.

pub mod cgroup;
pub mod cli;
pub mod config;
pub mod container;
pub mod cpuset;
pub mod doctor;
pub mod nss;
pub mod openat2;
pub mod options;
pub mod privilege;
pub mod reconcile;
pub mod run_dir;
pub mod sif;
pub mod spank;
pub mod topology;

mod plugin;
