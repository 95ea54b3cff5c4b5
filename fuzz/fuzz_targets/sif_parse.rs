//! Any bytes given to the SIF reader: it must return an error or an image, never
//! panic, overflow, or read out of bounds; and everything berth does with an image
//! it accepted (siftool printers, object reads, partition lookup, superblock and
//! architecture checks) must hold up too.
#![no_main]

use std::path::Path;

use berth::sif::{siftool, Arch, Image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut image) = Image::read_unvalidated(data, None) else {
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
});
