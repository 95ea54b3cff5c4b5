//! SIF (Singularity Image Format): read, validate, write, and print like `siftool`.
//!
//! A SIF file is a 128-byte global header, a table of fixed-size object descriptors,
//! and the data objects the descriptors point at (a definition file, JSON metadata,
//! signatures, and the filesystem partitions). berth runs a job step in the image's
//! *primary system partition*, a squashfs that it mounts read-only through a loop
//! device limited to that partition's bytes.
//!
//! What each file does:
//! - [`format`](mod@format): the numbers and names of the on-disk format (data types, filesystem and
//!   partition types, ...), printed exactly as `siftool` prints them.
//! - [`arch`]: SIF architecture codes, the host's architecture and which images it runs.
//! - [`header`], [`descriptor`]: the two on-disk records, parsed from and encoded to bytes.
//! - [`validate`]: the structural checks that keep every read and mount inside the image.
//! - [`squashfs`]: the squashfs superblock check of the root partition.
//! - [`image`]: [`Image`], an opened and validated image, and the queries on it.
//! - [`trust`]: the keys a site trusts (OpenPGP and PEM key files).
//! - [`verify`](mod@verify): signature verification as `apptainer verify` does it (PGP,
//!   DSSE, legacy on request).
//! - [`siftool`]: `siftool header|list|info` output, byte for byte.
//! - [`write`](mod@write): writing a SIF file from data objects, laid out as `apptainer build` does.
//! - [`build`]: `berth sif build`: rootfs directory -> mksquashfs -> SIF, and a
//!   busybox-static rootfs for tests.
//!
//! Entry points for the container code: [`Image::open`] or [`Image::from_file`] (the
//! latter with a `File` the job user opened), then [`Image::check_runnable_on_host`],
//! which returns the [`Partition`] to mount (`offset`, `size`, `fs_type`, `arch`):
//!
//! ```no_run
//! # fn main() -> Result<(), berth::sif::SifError> {
//! use berth::sif::Image;
//!
//! let file = std::fs::File::open("/scratch/alice/app.sif").unwrap(); // as the job user
//! let image = Image::from_file_named(file, "/scratch/alice/app.sif")?; // header, table,
//! let root = image.check_runnable_on_host()?; // superblock: ~6 us whatever the size
//! // Loop device over image.file(): lo_offset = root.offset, lo_sizelimit = root.size,
//! // LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR; then mount it as "squashfs", read-only.
//! # let _ = (root, image.file());
//! # Ok(())
//! # }
//! ```
//!
//! Every error names the image and the field and value at fault; print it as
//! `berth: {error}`. Validation guarantees that the partition lies inside the file;
//! the squashfs *contents* are left to the kernel, which mounts them read-only. The
//! image is the user's file: it can change after the check, but the loop device is
//! bounded by the offset and size, so it still cannot reach outside the image file.

pub mod arch;
pub mod build;
mod bytes;
pub mod descriptor;
mod error;
pub mod format;
pub mod header;
pub mod image;
pub mod robustness;
pub mod siftool;
pub mod squashfs;
pub mod trust;
pub mod validate;
pub mod verify;
pub mod write;

pub use arch::Arch;
pub use descriptor::{Descriptor, Link};
pub use error::{Field, Problem, Region, SifError};
pub use format::{DataType, FsType, PartType};
pub use header::Header;
pub use image::{Image, Partition, ReadAt};
pub use squashfs::{Compression, Superblock};

/// The result type of this module.
pub type Result<T, E = SifError> = std::result::Result<T, E>;
