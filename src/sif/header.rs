//! The 128-byte global header at the start of every SIF file.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 32 | launch script, NUL-padded |
//! | 32 | 10 | magic `SIF_MAGIC\0` |
//! | 42 | 3 | version `01\0` |
//! | 45 | 3 | primary architecture code |
//! | 48 | 16 | image UUID (all zero: none) |
//! | 64.. | 8 each | created, modified, descriptors free, total, offset, size, data offset, data size (i64) |

use super::arch::Arch;
use super::bytes::{trim_nul_right, Fields, FieldsMut};
use super::format::{DESCRIPTOR_LEN, HEADER_LEN, LAUNCH_SCRIPT_LEN, MAGIC, VERSION};

/// The global header, as stored (nothing is checked by parsing; see [`super::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub launch_script: [u8; LAUNCH_SCRIPT_LEN],
    pub magic: [u8; 10],
    pub version: [u8; 3],
    pub arch: [u8; 3],
    pub id: [u8; 16],
    pub created: i64,
    pub modified: i64,
    pub descriptors_free: i64,
    pub descriptors_total: i64,
    pub descriptors_offset: i64,
    pub descriptors_size: i64,
    pub data_offset: i64,
    pub data_size: i64,
}

impl Header {
    /// Reads the fields of `raw`; never fails.
    pub fn parse(raw: &[u8; HEADER_LEN]) -> Header {
        let f = Fields(raw);
        Header {
            launch_script: f.bytes::<0, LAUNCH_SCRIPT_LEN>(),
            magic: f.bytes::<32, 10>(),
            version: f.bytes::<42, 3>(),
            arch: f.bytes::<45, 3>(),
            id: f.bytes::<48, 16>(),
            created: f.i64::<64>(),
            modified: f.i64::<72>(),
            descriptors_free: f.i64::<80>(),
            descriptors_total: f.i64::<88>(),
            descriptors_offset: f.i64::<96>(),
            descriptors_size: f.i64::<104>(),
            data_offset: f.i64::<112>(),
            data_size: f.i64::<120>(),
        }
    }

    /// The 128 bytes stored for this header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut raw = [0u8; HEADER_LEN];
        let mut f = FieldsMut(&mut raw);
        f.put::<0, LAUNCH_SCRIPT_LEN>(self.launch_script);
        f.put::<32, 10>(self.magic);
        f.put::<42, 3>(self.version);
        f.put::<45, 3>(self.arch);
        f.put::<48, 16>(self.id);
        f.put::<64, 8>(self.created.to_le_bytes());
        f.put::<72, 8>(self.modified.to_le_bytes());
        f.put::<80, 8>(self.descriptors_free.to_le_bytes());
        f.put::<88, 8>(self.descriptors_total.to_le_bytes());
        f.put::<96, 8>(self.descriptors_offset.to_le_bytes());
        f.put::<104, 8>(self.descriptors_size.to_le_bytes());
        f.put::<112, 8>(self.data_offset.to_le_bytes());
        f.put::<120, 8>(self.data_size.to_le_bytes());
        raw
    }

    /// A header for an image with `capacity` empty descriptor slots at `descriptors_offset`
    /// and no data yet.
    pub fn empty(capacity: i64, descriptors_offset: i64) -> Header {
        let descriptors_size = capacity.saturating_mul(DESCRIPTOR_LEN as i64);
        Header {
            launch_script: [0; LAUNCH_SCRIPT_LEN],
            magic: MAGIC,
            version: VERSION,
            arch: Arch::Unknown.code(),
            id: [0; 16],
            created: 0,
            modified: 0,
            descriptors_free: capacity,
            descriptors_total: capacity,
            descriptors_offset,
            descriptors_size,
            data_offset: descriptors_offset.saturating_add(descriptors_size),
            data_size: 0,
        }
    }

    /// The launch script without its NUL padding.
    pub fn launch_script(&self) -> &[u8] {
        trim_nul_right(&self.launch_script)
    }

    /// The version without its NUL padding (`01`).
    pub fn version(&self) -> &[u8] {
        trim_nul_right(&self.version)
    }

    /// The primary architecture (that of the primary system partition).
    pub fn arch(&self) -> Arch {
        Arch::from_code(self.arch)
    }

    /// The image UUID, or `None` when it is all zero.
    pub fn id(&self) -> Option<[u8; 16]> {
        (self.id != [0; 16]).then_some(self.id)
    }
}

/// `id` in the usual 8-4-4-4-12 lowercase form.
pub fn format_uuid(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_is_identity() {
        let mut h = Header::empty(48, 4096);
        h.launch_script[..5].copy_from_slice(b"#!/x\n");
        h.id = [7; 16];
        h.created = -62_135_596_800;
        h.data_size = 12345;
        assert_eq!(Header::parse(&h.encode()), h);
    }

    #[test]
    fn fields_sit_at_the_documented_offsets() {
        let h = Header::empty(48, 4096);
        let raw = h.encode();
        assert_eq!(&raw[32..42], b"SIF_MAGIC\0");
        assert_eq!(&raw[42..45], b"01\0");
        assert_eq!(&raw[45..48], b"00\0");
        assert_eq!(i64::from_le_bytes(raw[88..96].try_into().unwrap()), 48);
        assert_eq!(i64::from_le_bytes(raw[104..112].try_into().unwrap()), 28080);
        assert_eq!(i64::from_le_bytes(raw[112..120].try_into().unwrap()), 32176);
    }

    #[test]
    fn formats_uuids() {
        let id = [
            0x3f, 0xa8, 0x02, 0xcc, 0x35, 0x8b, 0x45, 0xe3, 0xbc, 0xc0, 0x69, 0xdc, 0x7a, 0x45,
            0xf9, 0xf8,
        ];
        assert_eq!(format_uuid(&id), "3fa802cc-358b-45e3-bcc0-69dc7a45f9f8");
    }
}
