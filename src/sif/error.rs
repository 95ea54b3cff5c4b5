//! Errors of the SIF module.
//!
//! [`Problem`] says what is wrong with an image's bytes (or why it cannot run here), by
//! field and value, without a path; [`SifError`] is what callers get: the image's path
//! and the problem, or an I/O or build failure. Both texts reach users (on srun's
//! stderr, after a `berth: ` prefix), so they are short and name the value.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::arch::Arch;
use super::bytes::escape;
use super::format::FsType;

/// Something wrong with an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("file is {len} bytes, too short for a SIF header (128 bytes)")]
    HeaderTruncated { len: u64 },

    #[error("not a SIF image (magic is \"{}\", expected \"SIF_MAGIC\\0\")", escape(.found))]
    BadMagic { found: [u8; 10] },

    #[error("unsupported SIF version \"{}\" (berth reads version \"01\")", escape(.found))]
    BadVersion { found: [u8; 3] },

    #[error("{field} is {value}, which is negative")]
    Negative { field: Field, value: i64 },

    #[error("descriptors total is {total}, more than berth accepts ({max})")]
    TooManyDescriptors { total: i64, max: i64 },

    #[error("descriptors size is {size} but {total} descriptors of 585 bytes take {expected}")]
    DescriptorSizeMismatch {
        size: i64,
        total: i64,
        expected: i64,
    },

    #[error(
        "descriptors free is {free} but {used} of {total} descriptors are in use \
         (expected {} free)", .total.saturating_sub(*.used)
    )]
    FreeCountMismatch { free: i64, total: i64, used: i64 },

    #[error("{what}: offset {offset} + size {size} overflows")]
    Overflow {
        what: Region,
        offset: i64,
        size: i64,
    },

    #[error("{what} (bytes {start}..{end}) extends past the end of the file ({len} bytes)")]
    PastEnd {
        what: Region,
        start: i64,
        end: i64,
        len: u64,
    },

    #[error("{what} (bytes {start}..{end}) overlaps {other} (bytes {other_start}..{other_end})")]
    Overlap {
        what: Region,
        start: i64,
        end: i64,
        other: Region,
        other_start: i64,
        other_end: i64,
    },

    #[error(
        "{what} (bytes {start}..{end}) lies outside the data section (bytes {data_start}..{data_end})"
    )]
    OutsideData {
        what: Region,
        start: i64,
        end: i64,
        data_start: i64,
        data_end: i64,
    },

    #[error("descriptor slot {slot} is in use but its object id is 0")]
    ZeroId { slot: usize },

    #[error("object id {id} is used twice (descriptor slots {first} and {second})")]
    DuplicateId {
        id: u32,
        first: usize,
        second: usize,
    },

    #[error(
        "no primary system partition (no FS object of partition type *System): \
         not a container image"
    )]
    NoPrimaryPartition,

    #[error(
        "{} primary system partitions (objects {}); an image must have exactly one",
        .ids.len(), join_ids(.ids)
    )]
    MultiplePrimaryPartitions { ids: Vec<u32> },

    #[error(
        "primary partition (object {id}) is {fs_type}; berth only runs Squashfs root filesystems"
    )]
    NotSquashfs { id: u32, fs_type: FsType },

    #[error(
        "primary partition (object {id}) is {size} bytes, too small for a squashfs \
         superblock (96 bytes)"
    )]
    SuperblockTruncated { id: u32, size: u64 },

    #[error(
        "primary partition (object {id}) is not a squashfs (magic is \"{}\", expected \"hsqs\")",
        escape(.found)
    )]
    SquashfsMagic { id: u32, found: [u8; 4] },

    #[error(
        "primary partition (object {id}): squashfs version is {major}.{minor}; \
         the kernel mounts version 4.0"
    )]
    SquashfsVersion { id: u32, major: u16, minor: u16 },

    #[error(
        "primary partition (object {id}): squashfs compression id is {value}, which is unknown"
    )]
    SquashfsCompression { id: u32, value: u16 },

    #[error(
        "primary partition (object {id}): squashfs compression {name} cannot be mounted \
         by the Linux kernel; rebuild the image with gzip, xz, lz4 or zstd"
    )]
    SquashfsCompressionUnsupported { id: u32, name: &'static str },

    #[error(
        "primary partition (object {id}): squashfs block size is {block_size} with block \
         log {block_log} (expected a power of two from 4 KiB to 1 MiB and its log)"
    )]
    SquashfsBlockSize {
        id: u32,
        block_size: u32,
        block_log: u16,
    },

    #[error(
        "primary partition (object {id}): the squashfs says it is {bytes_used} bytes but \
         the partition holds {size}; the image is truncated"
    )]
    SquashfsTruncated { id: u32, bytes_used: u64, size: u64 },

    #[error(
        "image architecture is {image}, which this host ({host}) cannot run \
         (and no binfmt_misc emulator for {image} is registered)"
    )]
    ArchMismatch { image: Arch, host: Arch },

    #[error("the image has no data objects")]
    NoObjects,

    #[error("object id 0 is invalid (ids start at 1)")]
    InvalidObjectId,

    #[error("no object with id {id}")]
    NoSuchObject { id: u32 },

    #[error("object {id}: signature hash type {value} is unknown")]
    UnknownHashType { id: u32, value: i32 },

    #[error("object {id}: OCI digest \"{}\" is not a sha256 digest", escape(.digest))]
    BadOciDigest { id: u32, digest: Vec<u8> },
}

fn join_ids(ids: &[u32]) -> String {
    let parts: Vec<String> = ids.iter().map(u32::to_string).collect();
    parts.join(" and ")
}

/// A header or descriptor field named in a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A header field, named as siftool prints it (lowercase).
    Header(&'static str),
    /// A field of the descriptor of object `id`.
    Object { id: u32, field: &'static str },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Header(name) => f.write_str(name),
            Field::Object { id, field } => write!(f, "object {id} {field}"),
        }
    }
}

/// A range of bytes named in a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Header,
    DescriptorTable,
    DataSection,
    Object { id: u32 },
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Header => f.write_str("the header"),
            Region::DescriptorTable => f.write_str("the descriptor table"),
            Region::DataSection => f.write_str("the data section"),
            Region::Object { id } => write!(f, "object {id}"),
        }
    }
}

/// An error from the SIF module.
#[derive(Debug, thiserror::Error)]
pub enum SifError {
    /// The image at `path` is invalid or cannot run here.
    #[error("{}: {problem}", .path.display())]
    Image { path: PathBuf, problem: Problem },

    /// Reading or writing `path` failed.
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    /// An external program could not be started.
    #[error("cannot run {program}: {source} (install the Debian package {package})")]
    Spawn {
        program: String,
        package: &'static str,
        #[source]
        source: io::Error,
    },

    /// An external program failed.
    #[error("{program} failed ({status}): {stderr}")]
    ToolFailed {
        program: String,
        status: String,
        stderr: String,
    },

    /// An input to a build is unusable.
    #[error("{}: {reason}", .path.display())]
    Input { path: PathBuf, reason: String },
}

impl SifError {
    /// The image problem, if this is one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            SifError::Image { problem, .. } => Some(problem),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        SifError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        SifError::Input {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_value() {
        let e = SifError::Image {
            path: "/img.sif".into(),
            problem: Problem::BadMagic {
                found: *b"\x7fELF\x02\x01\x01\0\0\0",
            },
        };
        assert_eq!(
            e.to_string(),
            "/img.sif: not a SIF image (magic is \"\\x7fELF\\x02\\x01\\x01\\0\\0\\0\", expected \"SIF_MAGIC\\0\")"
        );
        let p = Problem::Negative {
            field: Field::Object {
                id: 3,
                field: "offset",
            },
            value: -1,
        };
        assert_eq!(p.to_string(), "object 3 offset is -1, which is negative");
        let p = Problem::MultiplePrimaryPartitions { ids: vec![2, 5] };
        assert_eq!(
            p.to_string(),
            "2 primary system partitions (objects 2 and 5); an image must have exactly one"
        );
        let p = Problem::FreeCountMismatch {
            free: 48,
            total: 48,
            used: 2,
        };
        assert_eq!(
            p.to_string(),
            "descriptors free is 48 but 2 of 48 descriptors are in use (expected 46 free)"
        );
    }
}
