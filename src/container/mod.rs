//! Running a job step inside a SIF image (`srun --container=IMAGE.sif`).
//!
//! - [`image`]: open the image as the user, recognise it, locate its root;
//! - [`mount_policy`]: whether the kernel may mount the image for this user
//!   (`squashfs_mount=`, `image_paths=`);
//! - [`cache`]: one read-only squashfs mount per image per node, shared and
//!   reference-counted across slurmstepd processes, reaped when idle;
//! - [`binds`]: what is bound in, validated with the user's rights;
//! - [`identity`]: the user's passwd/group entries merged into the image's;
//! - [`env`]: the task's environment, as `apptainer exec` builds it;
//! - [`view`]: the step's mount namespace (overlay, binds, pivot_root), and
//!   entering it from a task;
//! - [`sys`]: the raw calls (root is regained with `crate::privilege`).
//!
//! The hooks that drive these live in `plugin::container_step`.

pub mod binds;
pub mod cache;
pub mod env;
pub mod identity;
pub mod image;
pub mod mount_policy;
pub mod signature_policy;
pub mod sys;
pub mod view;

use std::io;

/// Why a container step cannot run; the text reaches the user after `berth: `.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Bind(#[from] binds::BindError),
    #[error(transparent)]
    Mount(#[from] cache::MountError),
    #[error(transparent)]
    View(#[from] view::ViewError),
    #[error(transparent)]
    Env(#[from] env::EnvError),
    #[error(transparent)]
    MountPolicy(#[from] mount_policy::MountPolicyError),
    #[error(transparent)]
    Signature(#[from] signature_policy::SignatureError),
    #[error(transparent)]
    Options(#[from] crate::options::OptionError),
    #[error("cannot look up uid {uid} on this node: {error}")]
    Identity { uid: u32, error: io::Error },
    #[error("cannot {what}: {error}")]
    Setup {
        what: &'static str,
        error: io::Error,
    },
    #[error("{0}")]
    Slurm(#[from] crate::spank::SpankError),
}

/// An I/O error's text without Rust's ` (os error N)` suffix, for users.
pub fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
