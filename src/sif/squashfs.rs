//! The squashfs superblock of the root partition.
//!
//! Apptainer checks the magic (`hsqs`) and the compression id (u16 at byte 20). berth
//! also checks what the kernel would refuse at mount time, so the user gets the reason
//! instead of `mount: invalid argument`: version 4.0, a block size the kernel accepts,
//! a compressor the kernel has (mainline Linux never had lzma), and a filesystem that
//! fits in its partition (the loop device stops at the partition's end).

use std::fmt;

use super::bytes::Fields;
use super::error::Problem;

/// Size of a squashfs 4.0 superblock.
pub const SUPERBLOCK_LEN: usize = 96;
/// The squashfs magic, as stored.
pub const MAGIC: [u8; 4] = *b"hsqs";

/// A squashfs compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Lzma,
    Lzo,
    Xz,
    Lz4,
    Zstd,
}

const COMPRESSIONS: &[(Compression, u16, &str)] = &[
    (Compression::Gzip, 1, "gzip"),
    (Compression::Lzma, 2, "lzma"),
    (Compression::Lzo, 3, "lzo"),
    (Compression::Xz, 4, "xz"),
    (Compression::Lz4, 5, "lz4"),
    (Compression::Zstd, 6, "zstd"),
];

impl Compression {
    /// The compressor with superblock id `id`.
    pub fn from_id(id: u16) -> Option<Compression> {
        COMPRESSIONS
            .iter()
            .find(|(_, i, _)| *i == id)
            .map(|&(c, _, _)| c)
    }

    /// The compressor named `name` (as mksquashfs's `-comp` names it).
    pub fn from_name(name: &str) -> Option<Compression> {
        COMPRESSIONS
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|&(c, _, _)| c)
    }

    /// The superblock id.
    pub fn id(self) -> u16 {
        COMPRESSIONS
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or(0, |&(_, id, _)| id)
    }

    /// The name mksquashfs and the kernel use.
    pub fn name(self) -> &'static str {
        COMPRESSIONS
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or("unknown", |&(_, _, name)| name)
    }

    /// Whether mainline Linux can mount a squashfs compressed this way.
    pub fn kernel_supports(self) -> bool {
        self != Compression::Lzma
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fields of a squashfs 4.0 superblock berth looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub magic: [u8; 4],
    pub inodes: u32,
    pub mkfs_time: u32,
    pub block_size: u32,
    pub compression_id: u16,
    pub block_log: u16,
    pub flags: u16,
    pub major: u16,
    pub minor: u16,
    pub bytes_used: u64,
}

impl Superblock {
    /// Reads the fields of `raw`; never fails.
    pub fn parse(raw: &[u8; SUPERBLOCK_LEN]) -> Superblock {
        let f = Fields(raw);
        Superblock {
            magic: f.bytes::<0, 4>(),
            inodes: f.u32::<4>(),
            mkfs_time: f.u32::<8>(),
            block_size: f.u32::<12>(),
            compression_id: f.u16::<20>(),
            block_log: f.u16::<22>(),
            flags: f.u16::<24>(),
            major: f.u16::<28>(),
            minor: f.u16::<30>(),
            bytes_used: f.u64::<40>(),
        }
    }

    /// The compressor, if the id is known.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id(self.compression_id)
    }

    /// Checks that the kernel can mount this superblock from a partition of
    /// `partition_size` bytes; `id` is the partition's object id, for messages.
    pub fn check(&self, id: u32, partition_size: u64) -> Result<(), Problem> {
        if self.magic != MAGIC {
            return Err(Problem::SquashfsMagic {
                id,
                found: self.magic,
            });
        }
        if (self.major, self.minor) != (4, 0) {
            return Err(Problem::SquashfsVersion {
                id,
                major: self.major,
                minor: self.minor,
            });
        }
        let compression = self.compression().ok_or(Problem::SquashfsCompression {
            id,
            value: self.compression_id,
        })?;
        if !compression.kernel_supports() {
            return Err(Problem::SquashfsCompressionUnsupported {
                id,
                name: compression.name(),
            });
        }
        let block_size_ok = self.block_size.is_power_of_two()
            && (4096..=1 << 20).contains(&self.block_size)
            && u32::from(self.block_log) == self.block_size.trailing_zeros();
        if !block_size_ok {
            return Err(Problem::SquashfsBlockSize {
                id,
                block_size: self.block_size,
                block_log: self.block_log,
            });
        }
        if self.bytes_used > partition_size {
            return Err(Problem::SquashfsTruncated {
                id,
                bytes_used: self.bytes_used,
                size: partition_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock as mksquashfs 4.5 writes it (gzip, 128 KiB blocks).
    pub(crate) fn good() -> [u8; SUPERBLOCK_LEN] {
        let mut raw = [0u8; SUPERBLOCK_LEN];
        raw[0..4].copy_from_slice(b"hsqs");
        raw[12..16].copy_from_slice(&(128u32 << 10).to_le_bytes());
        raw[20..22].copy_from_slice(&1u16.to_le_bytes());
        raw[22..24].copy_from_slice(&17u16.to_le_bytes());
        raw[28..30].copy_from_slice(&4u16.to_le_bytes());
        raw[40..48].copy_from_slice(&4000u64.to_le_bytes());
        raw
    }

    #[test]
    fn accepts_a_good_superblock() {
        let sb = Superblock::parse(&good());
        assert_eq!(sb.compression(), Some(Compression::Gzip));
        assert_eq!(sb.check(2, 4096), Ok(()));
    }

    #[test]
    fn names_each_defect() {
        let mut raw = good();
        raw[0] = b'x';
        assert!(matches!(
            Superblock::parse(&raw).check(2, 4096),
            Err(Problem::SquashfsMagic { id: 2, .. })
        ));
        let mut raw = good();
        raw[20] = 9;
        assert_eq!(
            Superblock::parse(&raw).check(2, 4096),
            Err(Problem::SquashfsCompression { id: 2, value: 9 })
        );
        let mut raw = good();
        raw[20] = 2;
        assert_eq!(
            Superblock::parse(&raw).check(2, 4096),
            Err(Problem::SquashfsCompressionUnsupported {
                id: 2,
                name: "lzma"
            })
        );
        let mut raw = good();
        raw[28] = 3;
        assert!(matches!(
            Superblock::parse(&raw).check(2, 4096),
            Err(Problem::SquashfsVersion { major: 3, .. })
        ));
        let mut raw = good();
        raw[22] = 16;
        assert!(matches!(
            Superblock::parse(&raw).check(2, 4096),
            Err(Problem::SquashfsBlockSize { .. })
        ));
        assert_eq!(
            Superblock::parse(&good()).check(2, 3999),
            Err(Problem::SquashfsTruncated {
                id: 2,
                bytes_used: 4000,
                size: 3999
            })
        );
    }

    #[test]
    fn compression_names_round_trip() {
        for &(c, id, name) in COMPRESSIONS {
            assert_eq!(Compression::from_id(id), Some(c));
            assert_eq!(Compression::from_name(name), Some(c));
            assert_eq!(c.id(), id);
        }
    }
}
