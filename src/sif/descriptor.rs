//! Object descriptors: 585 bytes each, in a table the header points at.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | data type (i32) |
//! | 4 | 1 | used (non-zero: in use) |
//! | 5 | 4 | id (u32, 1-based) |
//! | 9 | 4 | group id, ORed with `0xf0000000` |
//! | 13 | 4 | linked id (top nibble `0xf`: a group) |
//! | 17.. | 8 each | offset, size, size with padding, created, modified, uid, gid (i64) |
//! | 73 | 128 | name, NUL-padded |
//! | 201 | 384 | extra: type-specific metadata |

use super::arch::Arch;
use super::bytes::{trim_nul_right, until_nul, Fields, FieldsMut};
use super::format::{
    DataType, FsType, HashType, MessageFormat, MessageType, PartType, SbomFormat, DESCRIPTOR_LEN,
    ENTITY_LEN, EXTRA_LEN, GROUP_MASK, NAME_LEN,
};

/// One descriptor, as stored (nothing is checked by parsing; see [`super::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Position in the descriptor table (not stored in the descriptor itself).
    pub slot: usize,
    pub data_type: DataType,
    pub used: bool,
    pub id: u32,
    /// The group field as stored (`group | 0xf0000000`); see [`Descriptor::group_id`].
    pub raw_group_id: u32,
    /// The link field as stored; see [`Descriptor::link`].
    pub raw_linked_id: u32,
    pub offset: i64,
    pub size: i64,
    pub size_with_padding: i64,
    pub created: i64,
    pub modified: i64,
    pub uid: i64,
    pub gid: i64,
    pub name: [u8; NAME_LEN],
    pub extra: [u8; EXTRA_LEN],
}

/// What an object is linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    None,
    /// Another object, by id (e.g. a signature of one partition).
    Object(u32),
    /// A group of objects, by group id (e.g. a signature of the whole group).
    Group(u32),
}

/// The extra fields of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMeta {
    pub fs_type: FsType,
    pub part_type: PartType,
    pub arch: Arch,
}

impl PartitionMeta {
    /// Reads the partition fields of a descriptor's extra field.
    pub fn from_extra(extra: &[u8; EXTRA_LEN]) -> PartitionMeta {
        let f = Fields(extra);
        PartitionMeta {
            fs_type: FsType::from_raw(f.i32::<0>()),
            part_type: PartType::from_raw(f.i32::<4>()),
            arch: Arch::from_code(f.bytes::<8, 3>()),
        }
    }
}

/// The extra fields of a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureMeta {
    pub hash_type: HashType,
    pub entity: [u8; ENTITY_LEN],
}

impl SignatureMeta {
    /// The signer's 20-byte PGP fingerprint, or `None` when it is all zero (DSSE).
    pub fn fingerprint(&self) -> Option<[u8; 20]> {
        let mut fp = [0u8; 20];
        fp.copy_from_slice(&self.entity[..20]);
        (fp != [0; 20]).then_some(fp)
    }
}

impl Descriptor {
    /// Reads the fields of `raw`, found in table slot `slot`; never fails.
    pub fn parse(raw: &[u8; DESCRIPTOR_LEN], slot: usize) -> Descriptor {
        let f = Fields(raw);
        Descriptor {
            slot,
            data_type: DataType::from_raw(f.i32::<0>()),
            used: f.u8::<4>() != 0,
            id: f.u32::<5>(),
            raw_group_id: f.u32::<9>(),
            raw_linked_id: f.u32::<13>(),
            offset: f.i64::<17>(),
            size: f.i64::<25>(),
            size_with_padding: f.i64::<33>(),
            created: f.i64::<41>(),
            modified: f.i64::<49>(),
            uid: f.i64::<57>(),
            gid: f.i64::<65>(),
            name: f.bytes::<73, NAME_LEN>(),
            extra: f.bytes::<201, EXTRA_LEN>(),
        }
    }

    /// Whether the descriptor slot `raw` is in use, without parsing the rest.
    pub fn is_used(raw: &[u8; DESCRIPTOR_LEN]) -> bool {
        Fields(raw).u8::<4>() != 0
    }

    /// The 585 bytes stored for this descriptor.
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut raw = [0u8; DESCRIPTOR_LEN];
        let mut f = FieldsMut(&mut raw);
        f.put::<0, 4>(self.data_type.raw().to_le_bytes());
        f.put::<4, 1>([u8::from(self.used)]);
        f.put::<5, 4>(self.id.to_le_bytes());
        f.put::<9, 4>(self.raw_group_id.to_le_bytes());
        f.put::<13, 4>(self.raw_linked_id.to_le_bytes());
        f.put::<17, 8>(self.offset.to_le_bytes());
        f.put::<25, 8>(self.size.to_le_bytes());
        f.put::<33, 8>(self.size_with_padding.to_le_bytes());
        f.put::<41, 8>(self.created.to_le_bytes());
        f.put::<49, 8>(self.modified.to_le_bytes());
        f.put::<57, 8>(self.uid.to_le_bytes());
        f.put::<65, 8>(self.gid.to_le_bytes());
        f.put::<73, NAME_LEN>(self.name);
        f.put::<201, EXTRA_LEN>(self.extra);
        raw
    }

    /// The group this object is in, or 0 for none.
    pub fn group_id(&self) -> u32 {
        self.raw_group_id & !GROUP_MASK
    }

    /// What this object is linked to.
    pub fn link(&self) -> Link {
        let id = self.raw_linked_id & !GROUP_MASK;
        if id == 0 {
            Link::None
        } else if self.raw_linked_id & GROUP_MASK == GROUP_MASK {
            Link::Group(id)
        } else {
            Link::Object(id)
        }
    }

    /// The name without its NUL padding.
    pub fn name(&self) -> &[u8] {
        trim_nul_right(&self.name)
    }

    /// First byte after the object (`offset + size`), or `None` on overflow.
    pub fn end(&self) -> Option<i64> {
        self.offset.checked_add(self.size)
    }

    /// The partition fields, if this is a partition.
    pub fn partition(&self) -> Option<PartitionMeta> {
        if self.data_type != DataType::Partition {
            return None;
        }
        Some(PartitionMeta::from_extra(&self.extra))
    }

    /// Whether this is a used partition of type `part_type`.
    pub fn is_partition_of_type(&self, part_type: PartType) -> bool {
        self.partition().is_some_and(|p| p.part_type == part_type)
    }

    /// The signature fields, if this is a signature.
    pub fn signature(&self) -> Option<SignatureMeta> {
        if self.data_type != DataType::Signature {
            return None;
        }
        let f = Fields(&self.extra);
        Some(SignatureMeta {
            hash_type: HashType::from_raw(f.i32::<0>()),
            entity: f.bytes::<4, ENTITY_LEN>(),
        })
    }

    /// The format and message type, if this is a cryptographic message.
    pub fn crypto_message(&self) -> Option<(MessageFormat, MessageType)> {
        if self.data_type != DataType::CryptoMessage {
            return None;
        }
        let f = Fields(&self.extra);
        Some((
            MessageFormat::from_raw(f.i32::<0>()),
            MessageType::from_raw(f.i32::<4>()),
        ))
    }

    /// The SBOM format, if this is an SBOM.
    pub fn sbom_format(&self) -> Option<SbomFormat> {
        if self.data_type != DataType::Sbom {
            return None;
        }
        Some(SbomFormat::from_raw(Fields(&self.extra).i32::<0>()))
    }

    /// The digest text stored in an OCI root index or blob (up to the first NUL),
    /// unchecked; see [`parse_oci_digest`].
    pub fn oci_digest_raw(&self) -> Option<&[u8]> {
        matches!(self.data_type, DataType::OciRootIndex | DataType::OciBlob)
            .then(|| until_nul(&self.extra))
    }
}

/// `text` if it is a digest the reference implementation accepts (`sha256:` and 64
/// lowercase hex digits), else `None`.
pub fn parse_oci_digest(text: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(text).ok()?;
    let mut parts = text.split(':');
    let (algorithm, hex) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || algorithm != "sha256" || hex.len() != 64 {
        return None;
    }
    hex.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some(text)
}

/// The extra field of a partition.
pub fn partition_extra(fs_type: FsType, part_type: PartType, arch: Arch) -> [u8; EXTRA_LEN] {
    let mut extra = [0u8; EXTRA_LEN];
    let mut f = FieldsMut(&mut extra);
    f.put::<0, 4>(fs_type.raw().to_le_bytes());
    f.put::<4, 4>(part_type.raw().to_le_bytes());
    f.put::<8, 3>(arch.code());
    extra
}

/// The extra field of a signature.
pub fn signature_extra(hash_type: HashType, entity: &[u8]) -> [u8; EXTRA_LEN] {
    let mut extra = [0u8; EXTRA_LEN];
    FieldsMut(&mut extra).put::<0, 4>(hash_type.raw().to_le_bytes());
    let n = entity.len().min(ENTITY_LEN);
    extra[4..4 + n].copy_from_slice(&entity[..n]);
    extra
}

/// The extra field of a cryptographic message.
pub fn crypto_message_extra(format: MessageFormat, message: MessageType) -> [u8; EXTRA_LEN] {
    let mut extra = [0u8; EXTRA_LEN];
    let mut f = FieldsMut(&mut extra);
    f.put::<0, 4>(format.raw().to_le_bytes());
    f.put::<4, 4>(message.raw().to_le_bytes());
    extra
}

/// The extra field of an SBOM.
pub fn sbom_extra(format: SbomFormat) -> [u8; EXTRA_LEN] {
    let mut extra = [0u8; EXTRA_LEN];
    FieldsMut(&mut extra).put::<0, 4>(format.raw().to_le_bytes());
    extra
}

/// The extra field of an OCI root index or blob holding `digest` (truncated to fit).
pub fn oci_digest_extra(digest: &str) -> [u8; EXTRA_LEN] {
    let mut extra = [0u8; EXTRA_LEN];
    let n = digest.len().min(EXTRA_LEN);
    extra[..n].copy_from_slice(&digest.as_bytes()[..n]);
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Descriptor {
        Descriptor {
            slot: 1,
            data_type: DataType::Partition,
            used: true,
            id: 2,
            raw_group_id: GROUP_MASK | 1,
            raw_linked_id: 0,
            offset: 36864,
            size: 4096,
            size_with_padding: 8188,
            created: 0,
            modified: 0,
            uid: 0,
            gid: 0,
            name: [0; NAME_LEN],
            extra: partition_extra(FsType::Squashfs, PartType::PrimarySystem, Arch::I386),
        }
    }

    #[test]
    fn encode_then_parse_is_identity() {
        let d = sample();
        assert_eq!(Descriptor::parse(&d.encode(), 1), d);
        assert!(Descriptor::is_used(&d.encode()));
    }

    #[test]
    fn reads_partition_metadata() {
        let p = sample().partition().unwrap();
        assert_eq!(p.fs_type, FsType::Squashfs);
        assert_eq!(p.part_type, PartType::PrimarySystem);
        assert_eq!(p.arch, Arch::I386);
        assert!(sample().signature().is_none());
    }

    #[test]
    fn decodes_groups_and_links() {
        let mut d = sample();
        assert_eq!(d.group_id(), 1);
        d.raw_group_id = GROUP_MASK;
        assert_eq!(d.group_id(), 0);
        d.raw_linked_id = GROUP_MASK | 1;
        assert_eq!(d.link(), Link::Group(1));
        d.raw_linked_id = 2;
        assert_eq!(d.link(), Link::Object(2));
        d.raw_linked_id = GROUP_MASK;
        assert_eq!(d.link(), Link::None);
    }

    #[test]
    fn signature_fingerprint_is_absent_when_zero() {
        let mut d = sample();
        d.data_type = DataType::Signature;
        d.extra = signature_extra(HashType::Sha256, &[]);
        assert_eq!(d.signature().unwrap().fingerprint(), None);
        d.extra = signature_extra(HashType::Sha256, &[0xab; 20]);
        assert_eq!(d.signature().unwrap().fingerprint(), Some([0xab; 20]));
    }

    #[test]
    fn accepts_only_sha256_digests() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse_oci_digest(good.as_bytes()), Some(good.as_str()));
        assert_eq!(parse_oci_digest(b"sha256:abc"), None);
        assert_eq!(
            parse_oci_digest(format!("sha512:{}", "a".repeat(64)).as_bytes()),
            None
        );
        assert_eq!(
            parse_oci_digest(format!("sha256:{}", "A".repeat(64)).as_bytes()),
            None
        );
        assert_eq!(parse_oci_digest(b"sha256:a:b"), None);
    }
}
