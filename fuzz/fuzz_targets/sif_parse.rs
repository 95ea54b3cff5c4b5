//! Any bytes given to the SIF reader: it must return an error or an image, never
//! panic, overflow, or read out of bounds; and everything berth does with an image
//! it accepted (siftool printers, object reads, partition lookup, superblock and
//! architecture checks) must hold up too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| berth::sif::robustness::exercise(data));
