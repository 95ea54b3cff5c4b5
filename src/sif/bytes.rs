//! Little-endian fields of fixed-size on-disk records.
//!
//! Every record SIF stores (header, descriptor, squashfs superblock) has a fixed size,
//! so each field is read from a `[u8; LEN]` at a constant offset. The bounds are checked
//! when the code is compiled (`OFF + N <= LEN`), so no input can make a read panic.

/// Read-only view of a fixed-size record.
pub(crate) struct Fields<'a, const LEN: usize>(pub(crate) &'a [u8; LEN]);

impl<const LEN: usize> Fields<'_, LEN> {
    /// The `N` bytes at `OFF`.
    pub(crate) fn bytes<const OFF: usize, const N: usize>(&self) -> [u8; N] {
        const { assert!(OFF + N <= LEN) };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[OFF..OFF + N]);
        out
    }

    pub(crate) fn u8<const OFF: usize>(&self) -> u8 {
        self.bytes::<OFF, 1>()[0]
    }

    pub(crate) fn u16<const OFF: usize>(&self) -> u16 {
        u16::from_le_bytes(self.bytes::<OFF, 2>())
    }

    pub(crate) fn u32<const OFF: usize>(&self) -> u32 {
        u32::from_le_bytes(self.bytes::<OFF, 4>())
    }

    pub(crate) fn i32<const OFF: usize>(&self) -> i32 {
        i32::from_le_bytes(self.bytes::<OFF, 4>())
    }

    pub(crate) fn u64<const OFF: usize>(&self) -> u64 {
        u64::from_le_bytes(self.bytes::<OFF, 8>())
    }

    pub(crate) fn i64<const OFF: usize>(&self) -> i64 {
        i64::from_le_bytes(self.bytes::<OFF, 8>())
    }
}

/// Writable view of a fixed-size record.
pub(crate) struct FieldsMut<'a, const LEN: usize>(pub(crate) &'a mut [u8; LEN]);

impl<const LEN: usize> FieldsMut<'_, LEN> {
    pub(crate) fn put<const OFF: usize, const N: usize>(&mut self, value: [u8; N]) {
        const { assert!(OFF + N <= LEN) };
        self.0[OFF..OFF + N].copy_from_slice(&value);
    }
}

/// `bytes` without its trailing NUL bytes (how the reference implementation trims
/// names, launch scripts and versions).
pub(crate) fn trim_nul_right(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// `bytes` up to (not including) the first NUL byte.
pub(crate) fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// `bytes` written for a human: printable ASCII as is, anything else as `\xNN`
/// (`\0` for NUL), so an error message never carries raw control bytes.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            0 => out.push_str("\\0"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_at_their_offsets() {
        let mut raw = [0u8; 16];
        raw[0] = 0x34;
        raw[1] = 0x12;
        raw[8..16].copy_from_slice(&(-2i64).to_le_bytes());
        let f = Fields(&raw);
        assert_eq!(f.u16::<0>(), 0x1234);
        assert_eq!(f.i64::<8>(), -2);
        assert_eq!(f.bytes::<0, 2>(), [0x34, 0x12]);
    }

    #[test]
    fn writes_fields_at_their_offsets() {
        let mut raw = [0u8; 8];
        FieldsMut(&mut raw).put::<4, 4>(7u32.to_le_bytes());
        assert_eq!(raw, [0, 0, 0, 0, 7, 0, 0, 0]);
    }

    #[test]
    fn trims_only_trailing_nuls() {
        assert_eq!(trim_nul_right(b"a\0b\0\0"), b"a\0b");
        assert_eq!(trim_nul_right(b"\0\0"), b"");
        assert_eq!(until_nul(b"ab\0cd"), b"ab");
    }

    #[test]
    fn escapes_non_printable_bytes() {
        assert_eq!(escape(b"\x7fELF\0\"x"), "\\x7fELF\\0\\\"x");
    }
}
