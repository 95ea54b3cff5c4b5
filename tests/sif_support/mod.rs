//! Shared helpers of the SIF integration tests (`tests/sif_*.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The reference test corpus, kept in the repository (tests/data/sif; where each file
/// comes from and its licence: tests/data/sif/README.md).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sif")
}

pub fn corpus_file(name: &str) -> PathBuf {
    corpus_dir().join(name)
}

pub fn corpus_bytes(name: &str) -> Vec<u8> {
    std::fs::read(corpus_file(name)).unwrap()
}

pub fn golden(kind: &str, name: &str) -> Vec<u8> {
    let path = corpus_dir()
        .join("golden")
        .join(kind)
        .join(format!("{name}.golden"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every image of the corpus.
pub const IMAGES: &[&str] = &[
    "empty-id.sif",
    "empty-launch-script.sif",
    "empty.sif",
    "one-group-signed-dsse.sif",
    "one-group-signed-legacy-all.sif",
    "one-group-signed-legacy-group.sif",
    "one-group-signed-legacy.sif",
    "one-group-signed-pgp.sif",
    "one-group.sif",
    "one-object-crypt-message.sif",
    "one-object-generic-json.sif",
    "one-object-oci-blob.sif",
    "one-object-oci-root-index.sif",
    "one-object-sbom.sif",
    "one-object-time.sif",
    "two-groups-signed-dsse.sif",
    "two-groups-signed-legacy-all.sif",
    "two-groups-signed-legacy-group.sif",
    "two-groups-signed-legacy.sif",
    "two-groups-signed-pgp.sif",
    "two-groups.sif",
];

/// Golden names of `TestApp_Header` and `TestApp_List`, with their image.
pub const HEADER_AND_LIST: &[(&str, &str)] = &[
    ("Empty", "empty.sif"),
    ("EmptyID", "empty-id.sif"),
    ("EmptyLaunchScript", "empty-launch-script.sif"),
    ("OneGroup", "one-group.sif"),
    ("OneGroupSignedLegacy", "one-group-signed-legacy.sif"),
    ("OneGroupSignedLegacyAll", "one-group-signed-legacy-all.sif"),
    (
        "OneGroupSignedLegacyGroup",
        "one-group-signed-legacy-group.sif",
    ),
    ("OneGroupSignedPGP", "one-group-signed-pgp.sif"),
    ("OneObjectCryptMessage", "one-object-crypt-message.sif"),
    ("OneObjectGenericJSON", "one-object-generic-json.sif"),
    ("OneObjectOCIBlob", "one-object-oci-blob.sif"),
    ("OneObjectOCIRootIndex", "one-object-oci-root-index.sif"),
    ("OneObjectSBOM", "one-object-sbom.sif"),
    ("OneObjectTime", "one-object-time.sif"),
    ("TwoGroups", "two-groups.sif"),
    ("TwoGroupsSignedLegacy", "two-groups-signed-legacy.sif"),
    (
        "TwoGroupsSignedLegacyAll",
        "two-groups-signed-legacy-all.sif",
    ),
    (
        "TwoGroupsSignedLegacyGroup",
        "two-groups-signed-legacy-group.sif",
    ),
    ("TwoGroupsSignedPGP", "two-groups-signed-pgp.sif"),
];

/// Golden names of `TestApp_Info`, with their image and object id.
pub const INFO: &[(&str, &str, u32)] = &[
    ("Time", "one-object-time.sif", 1),
    ("GenericJSON", "one-object-generic-json.sif", 1),
    ("CryptMessage", "one-object-crypt-message.sif", 1),
    ("SBOM", "one-object-sbom.sif", 1),
    ("OCIRootIndex", "one-object-oci-root-index.sif", 1),
    ("OCIBlob", "one-object-oci-blob.sif", 1),
    ("DataPartitionRaw", "two-groups-signed-pgp.sif", 1),
    ("DataPartitionSquashFS", "two-groups-signed-pgp.sif", 2),
    ("DataPartitionEXT3", "two-groups-signed-pgp.sif", 3),
    ("DataSignature", "two-groups-signed-pgp.sif", 4),
];

/// Golden names of `TestApp_Dump`, with their image and object id.
pub const DUMP: &[(&str, &str, u32)] = &[("One", "one-group.sif", 1), ("Two", "one-group.sif", 2)];

/// `a` and `b` side by side when they differ, for assertion messages.
pub fn show_diff(a: &[u8], b: &[u8]) -> String {
    format!(
        "got:\n{}\nwant:\n{}",
        String::from_utf8_lossy(a),
        String::from_utf8_lossy(b)
    )
}
