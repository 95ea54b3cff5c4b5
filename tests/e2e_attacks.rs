//! End-to-end attacks: every item of the security review (a user getting root, another
//! user's data, or the node, through berth), reproduced as the unprivileged test user on
//! a real Slurm, each asserting the attack fails and the host is unchanged. One module
//! per part of berth that acts as root for a user:
//!
//! - [`run_dir`]: what root creates, reads back and mounts under run_dir (the job's
//!   umask, symlinks, other users' images, stale mounts, the image caps), in container
//!   and in reconciled steps;
//! - [`env`]: what root evaluates and logs (env scripts, HOME, forged log lines);
//! - [`mounts`]: the container's mount view on nodes with private and with shared
//!   mounts (binds leaking to the host, setuid binaries, bind targets escaping).
//!
//! The container's mount view itself is checked as root in tests/container_mount.rs.
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

mod container_images;
mod support;

#[path = "e2e_attacks/env.rs"]
mod env;
#[path = "e2e_attacks/mounts.rs"]
mod mounts;
#[path = "e2e_attacks/run_dir.rs"]
mod run_dir;
