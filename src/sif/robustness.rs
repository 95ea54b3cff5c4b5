//! One entry point that drives every part of the reader over untrusted bytes,
//! shared by the fuzz target (`fuzz/`) and the corruption tests.

use std::path::Path;

use super::{siftool, Arch, Image};

/// Runs every reader, printer and check on `bytes`. It must never panic,
/// overflow or read out of bounds, whatever the bytes are.
pub fn exercise(bytes: &[u8]) {
    // The same bytes as a bare squashfs: the superblock checks berth makes before
    // the kernel's driver sees a file.
    if let Some(raw) = bytes.first_chunk::<{ super::squashfs::SUPERBLOCK_LEN }>() {
        let _ = super::squashfs::Superblock::parse(raw).check(0, bytes.len() as u64);
    }
    let Ok(mut image) = Image::read_unvalidated(bytes, None) else {
        return;
    };
    let _ = siftool::header(image.header());
    let _ = siftool::list(image.descriptors());
    let ids: Vec<u32> = image.descriptors().iter().map(|d| d.id).collect();
    for id in ids {
        if let Ok(d) = image.descriptor(id) {
            let _ = siftool::info(d);
            let _ = image.copy_object(d, &mut std::io::sink());
        }
    }
    if image.validate().is_ok() {
        let _ = image.primary_partition();
        let _ = image.root_superblock();
        let _ = image.check_runnable_on(Arch::Amd64, Path::new("/nonexistent"));
    }
}
