//! `berth doctor`: what an admin on a compute node needs to find why a step
//! failed or ran on the wrong CPUs, in one report (text or JSON).

pub mod logs;
pub mod slurm_conf;
