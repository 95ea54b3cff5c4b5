//! The numbers of the SIF format, and the names `siftool` prints for them.
//!
//! Each enumerated field is an "open" enum: the values the format defines, plus
//! `Unknown(raw)` for anything else, so that parsing never fails on a new or corrupt
//! value and the raw number is still there to report.

use std::fmt;

/// Size of the global header.
pub const HEADER_LEN: usize = 128;
/// Size of one descriptor.
pub const DESCRIPTOR_LEN: usize = 585;
/// Size of a descriptor's name field.
pub const NAME_LEN: usize = 128;
/// Size of a descriptor's type-specific "extra" field.
pub const EXTRA_LEN: usize = 384;
/// Size of a signature's entity field.
pub const ENTITY_LEN: usize = 256;
/// Size of the launch script field.
pub const LAUNCH_SCRIPT_LEN: usize = 32;

/// The magic bytes at offset 32, NUL included.
pub const MAGIC: [u8; 10] = *b"SIF_MAGIC\0";
/// The only SIF specification version there is, NUL included.
pub const VERSION: [u8; 3] = *b"01\0";

/// Group and link IDs are stored ORed with this; a link with it set names a group.
pub const GROUP_MASK: u32 = 0xf000_0000;
/// The group objects go in unless told otherwise.
pub const DEFAULT_GROUP: u32 = 1;

/// Descriptor slots a new image gets (what `apptainer build` and `siftool new` use).
pub const DEFAULT_DESCRIPTOR_CAPACITY: i64 = 48;
/// Where the descriptor table of a new image starts.
pub const DEFAULT_DESCRIPTORS_OFFSET: i64 = 4096;
/// Alignment of partitions in a new image (so the squashfs starts on a page).
pub const PARTITION_ALIGNMENT: u64 = 4096;
/// The launch script `apptainer build` writes.
pub const DEFAULT_LAUNCH_SCRIPT: &[u8] = b"#!/usr/bin/env run-singularity\n";

/// Go's zero `time.Time` as Unix seconds (January 1, year 1, UTC): the reference
/// implementation's "no time", used by deterministic images and not printed by siftool.
pub const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Defines an open enum: known values with their printed names, plus `Unknown(raw)`.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty), unknown = $unknown:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value the format does not define.
            Unknown($repr),
        }

        impl $name {
            /// Every value the format defines.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The value stored as `raw`.
            pub fn from_raw(raw: $repr) -> Self {
                match raw {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }

            /// The number stored on disk.
            pub fn raw(self) -> $repr {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Unknown(raw) => raw,
                }
            }

            /// The name `siftool` prints.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Unknown(_) => $unknown,
                }
            }

            /// True unless this is `Unknown`.
            pub fn is_known(self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

open_enum! {
    /// What a data object holds.
    DataType(i32), unknown = "Unknown" {
        /// The definition file the image was built from.
        Deffile = 0x4001 => "Def.FILE",
        /// Environment variables.
        EnvVars = 0x4002 => "Env.Vars",
        /// JSON labels.
        Labels = 0x4003 => "JSON.Labels",
        /// A filesystem partition.
        Partition = 0x4004 => "FS",
        /// A signature.
        Signature = 0x4005 => "Signature",
        /// Generic JSON metadata.
        GenericJson = 0x4006 => "JSON.Generic",
        /// Generic raw data.
        Generic = 0x4007 => "Generic/Raw",
        /// A cryptographic message.
        CryptoMessage = 0x4008 => "Cryptographic Message",
        /// A software bill of materials.
        Sbom = 0x4009 => "SBOM",
        /// An OCI root index.
        OciRootIndex = 0x400a => "OCI.RootIndex",
        /// An OCI blob.
        OciBlob = 0x400b => "OCI.Blob",
    }
}

open_enum! {
    /// The filesystem in a partition.
    FsType(i32), unknown = "Unknown" {
        /// Squashfs (what berth mounts).
        Squashfs = 1 => "Squashfs",
        /// Ext3 (deprecated, writable).
        Ext3 = 2 => "Ext3",
        /// An immutable object archive.
        Archive = 3 => "Archive",
        /// Raw data.
        Raw = 4 => "Raw",
        /// Squashfs inside dm-crypt.
        EncryptedSquashfs = 5 => "Encrypted squashfs",
        /// Squashfs holding a gocryptfs tree (Apptainer's unprivileged encryption).
        GocryptfsSquashfs = 6 => "Gocryptfs squashfs",
    }
}

open_enum! {
    /// The role of a partition.
    PartType(i32), unknown = "Unknown" {
        /// An operating system.
        System = 1 => "System",
        /// The primary operating system: the root filesystem containers run in.
        PrimarySystem = 2 => "*System",
        /// Data only.
        Data = 3 => "Data",
        /// A writable overlay.
        Overlay = 4 => "Overlay",
    }
}

open_enum! {
    /// The hash function of a signature (printed as Go's `crypto.Hash` names).
    HashType(i32), unknown = "unknown" {
        /// SHA-256.
        Sha256 = 1 => "SHA-256",
        /// SHA-384.
        Sha384 = 2 => "SHA-384",
        /// SHA-512.
        Sha512 = 3 => "SHA-512",
        /// BLAKE2s-256.
        Blake2s = 4 => "BLAKE2s-256",
        /// BLAKE2b-256.
        Blake2b = 5 => "BLAKE2b-256",
    }
}

open_enum! {
    /// The encoding of a cryptographic message.
    MessageFormat(i32), unknown = "Unknown" {
        /// OpenPGP.
        OpenPgp = 1 => "OpenPGP",
        /// PEM.
        Pem = 2 => "PEM",
    }
}

open_enum! {
    /// What a cryptographic message is.
    MessageType(i32), unknown = "Unknown" {
        /// An OpenPGP clear-signed message.
        ClearSignature = 0x100 => "Clear Signature",
        /// An RSA-OAEP encrypted key (PEM).
        RsaOaep = 0x200 => "RSA-OAEP",
    }
}

open_enum! {
    /// The format of an SBOM object.
    SbomFormat(i32), unknown = "unknown" {
        /// CycloneDX, JSON.
        CycloneDxJson = 1 => "cyclonedx-json",
        /// CycloneDX, XML.
        CycloneDxXml = 2 => "cyclonedx-xml",
        /// GitHub dependency snapshot, JSON.
        GithubJson = 3 => "github-json",
        /// SPDX, JSON.
        SpdxJson = 4 => "spdx-json",
        /// SPDX, RDF/XML.
        SpdxRdf = 5 => "spdx-rdf",
        /// SPDX, tag/value.
        SpdxTagValue = 6 => "spdx-tag-value",
        /// SPDX, YAML.
        SpdxYaml = 7 => "spdx-yaml",
        /// Syft, JSON.
        SyftJson = 8 => "syft-json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_round_trip_and_print_siftool_names() {
        for &t in DataType::KNOWN {
            assert_eq!(DataType::from_raw(t.raw()), t);
        }
        assert_eq!(DataType::from_raw(0x4004).to_string(), "FS");
        assert_eq!(
            DataType::from_raw(0x4008).to_string(),
            "Cryptographic Message"
        );
        assert_eq!(FsType::from_raw(1).to_string(), "Squashfs");
        assert_eq!(PartType::from_raw(2).to_string(), "*System");
        assert_eq!(HashType::from_raw(2).to_string(), "SHA-384");
        assert_eq!(MessageType::from_raw(0x100).to_string(), "Clear Signature");
        assert_eq!(SbomFormat::from_raw(1).to_string(), "cyclonedx-json");
    }

    #[test]
    fn unknown_values_keep_their_number() {
        let t = DataType::from_raw(0x4100);
        assert_eq!(t, DataType::Unknown(0x4100));
        assert_eq!(t.raw(), 0x4100);
        assert_eq!(t.to_string(), "Unknown");
        assert_eq!(SbomFormat::from_raw(0).to_string(), "unknown");
        assert!(!FsType::from_raw(-1).is_known());
    }
}
