//! Reconciling external cpusets with Slurm's allocation.
//!
//! `facts` gathers (cgroups, affinity, cgrules), `plan` decides (pure, from
//! facts + allocation + policy), `apply` does, records and undoes. The same
//! `facts::gather` and `plan::plan` give `berth doctor` its dry run.

pub mod apply;
pub mod facts;
pub mod plan;
pub mod process;
pub mod registry;

pub use facts::{Allocation, Facts, Sources};
pub use plan::{plan, Action, Conflict, Plan};
