//! `require_signature=yes`: a container step runs only an image whose root
//! filesystem is signed by a key of `signature_keys=` and unchanged since
//! (see [`crate::sif::verify`]).
//!
//! The check reads the image through the descriptor the user opened, before the
//! kernel sees any of it, and is done once per node and image: its result is kept in
//! the image's mount-cache entry (`images/<key>/verified`, the tag of the trusted
//! key set). The entry's key includes the file's ctime, so an image rewritten after
//! the check is a new entry and is checked again; a change during the check (the key
//! read again after it) refuses the step.

use std::fs::File;

use sha2::{Digest, Sha256};

use super::cache::{Cache, Key, MountError};
use super::image::OpenedImage;
use crate::config::Config;
use crate::sif::trust::{hex, KeyError, TrustedKeys};
use crate::sif::verify::{self, Options, Refusal};
use crate::sif::Image;

/// Why the policy refuses a step; the text reaches the user.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot run --container={path}: {refusal}; signer: {signers}; this site runs only images signed by {trusted} (require_signature=yes in berth's plugstack.conf line); sign the image with `apptainer sign` and a key the site trusts, or ask your administrator")]
    Refused {
        path: String,
        refusal: Box<Refusal>,
        signers: String,
        trusted: String,
    },
    #[error("cannot run --container={path}: the image is not a SIF file, so it carries no signature; this site runs only images signed by {trusted} (require_signature=yes in berth's plugstack.conf line)")]
    NotSif { path: String, trusted: String },
    #[error("cannot run --container={path}: the image changed while its signature was being checked; run the step again once it is no longer being written")]
    Changed { path: String },
    #[error("cannot run --container={path}: its signature cannot be checked: {detail}")]
    Unreadable { path: String, detail: String },
    #[error("cannot check image signatures: {0}; this is a site configuration problem (signature_keys= in berth's plugstack.conf line): tell your administrator")]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Cache(#[from] MountError),
}

/// The tag of the trusted key files as they are now (path, device, inode, size, mtime,
/// ctime of each): a verification under other or changed keys is not reused. Only
/// stat(2) calls, so that a step whose image was verified before parses no key.
pub fn policy_tag(paths: &[std::path::PathBuf]) -> Result<String, SignatureError> {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    for path in paths {
        let m = std::fs::metadata(path).map_err(|source| KeyError::Read {
            path: path.clone(),
            source,
        })?;
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(
            format!(
                "\0{} {} {} {}.{} {}.{}\n",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            )
            .as_bytes(),
        );
    }
    Ok(hex(&h.finalize()[..16]))
}

/// Passes when the policy is off, when this image (this very file state) was
/// verified under the same keys before, or when it verifies now.
pub fn check(config: &Config, cache: &Cache, image: &OpenedImage) -> Result<(), SignatureError> {
    if !config.require_signature {
        return Ok(());
    }
    let tag = policy_tag(&config.signature_keys)?;
    if cache.verified_tag(&image.key)?.as_deref() == Some(tag.as_str()) {
        log::debug!("container: {} verified before", image.path.display());
        return Ok(());
    }
    let keys = TrustedKeys::load(&config.signature_keys)?;
    let started = std::time::Instant::now();
    let v = verify_file(image, &keys)?;
    log::info!(
        "container: {} signed by {} ({}, objects {:?}), verified in {} ms",
        image.path.display(),
        v.key,
        v.format,
        v.objects,
        started.elapsed().as_millis()
    );
    let now = image
        .file
        .metadata()
        .map_err(|e| SignatureError::Unreadable {
            path: image.path.display().to_string(),
            detail: e.to_string(),
        })?;
    if Key::of(&now, image.key.extent) != image.key {
        return Err(SignatureError::Changed {
            path: image.path.display().to_string(),
        });
    }
    cache.record_verified(&image.key, &tag)?;
    Ok(())
}

fn verify_file(
    image: &OpenedImage,
    keys: &TrustedKeys,
) -> Result<verify::Verified, SignatureError> {
    let path = image.path.display().to_string();
    let unreadable = |detail: String| SignatureError::Unreadable {
        path: path.clone(),
        detail,
    };
    let file: File = image
        .file
        .try_clone()
        .map_err(|e| unreadable(e.to_string()))?;
    let sif = match Image::from_file_named(file, &image.path) {
        Ok(sif) => sif,
        Err(_) => {
            return Err(SignatureError::NotSif {
                path,
                trusted: keys.describe(),
            })
        }
    };
    let root = sif
        .primary_partition()
        .map_err(|e| unreadable(e.to_string()))?;
    verify::verify_object(&sif, root.id, keys, Options::default()).map_err(|refusal| {
        SignatureError::Refused {
            path: path.clone(),
            refusal: Box::new(refusal),
            signers: verify::signers(&sif),
            trusted: keys.describe(),
        }
    })
}
