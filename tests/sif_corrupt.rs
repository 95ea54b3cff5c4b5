//! Corrupted copies of a corpus image: each gives the right error, naming the field
//! and value, and nothing panics.
//!
//! The base image is `one-group.sif` (40960 bytes): header; 48 descriptors at 4096
//! (slot 0: object 1, Raw/System, 4 bytes at 32768; slot 1: object 2, Squashfs/*System,
//! 4096 bytes at 36864); data section 32176..40960.

#[path = "sif_support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;

use berth::sif::robustness::exercise;
use berth::sif::{siftool, Arch, Field, Image, Problem, Region, SifError};
use support::corpus_bytes;

/// A predicate on the problem a case must report.
type Expect = fn(&Problem) -> bool;

const LEN: usize = 40960;
const TABLE: usize = 4096;
const DESC: usize = 585;
const DATA: i64 = 32176;
const SQUASHFS: usize = 36864;

// Header fields.
const MAGIC: usize = 32;
const VERSION: usize = 42;
const FREE: usize = 80;
const TOTAL: usize = 88;
const DESC_OFFSET: usize = 96;
const DESC_SIZE: usize = 104;
const DATA_OFFSET: usize = 112;
const DATA_SIZE: usize = 120;

// Descriptor fields.
const ID: usize = 5;
const OFFSET: usize = 17;
const SIZE: usize = 25;
const EXTRA: usize = 201;

fn base() -> Vec<u8> {
    let bytes = corpus_bytes("one-group.sif");
    assert_eq!(bytes.len(), LEN);
    bytes
}

fn set_i64(bytes: &mut [u8], at: usize, value: i64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn desc(slot: usize, field: usize) -> usize {
    TABLE + slot * DESC + field
}

/// The problem opening (and validating) `bytes` reports.
fn problem(bytes: &[u8]) -> Problem {
    match Image::read(bytes, None) {
        Ok(_) => panic!("the corrupted image was accepted"),
        Err(e) => e
            .problem()
            .cloned()
            .unwrap_or_else(|| panic!("not a problem: {e}")),
    }
}

/// The problem the runnable check reports for an image that opens.
fn run_problem(bytes: &[u8]) -> Problem {
    let image = Image::read(bytes, None).expect("opens");
    let err = image
        .check_runnable_on(Arch::Amd64, Path::new("/nonexistent"))
        .unwrap_err();
    err.problem().cloned().unwrap()
}

#[test]
fn truncated_at_every_length() {
    let full = base();
    for n in 0..=LEN {
        let got = Image::read(&full[..n], None);
        match n {
            LEN => assert!(got.is_ok()),
            0..=127 => assert_eq!(
                got.unwrap_err().problem(),
                Some(&Problem::HeaderTruncated { len: n as u64 })
            ),
            128..=32175 => assert!(
                matches!(
                    got.unwrap_err().problem(),
                    Some(Problem::PastEnd { what: Region::DescriptorTable, start: 4096, end: 32176, len })
                        if *len == n as u64
                ),
                "length {n}"
            ),
            _ => assert!(
                matches!(
                    got.unwrap_err().problem(),
                    Some(Problem::PastEnd { what: Region::DataSection, start: DATA, end: 40960, len })
                        if *len == n as u64
                ),
                "length {n}"
            ),
        }
    }
}

#[test]
fn truncated_file_message_names_the_path_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.sif");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&base()[..36864 + 10])
        .unwrap();
    let err = Image::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the data section (bytes 32176..40960) extends past the end of the file \
             (36874 bytes)",
            path.display()
        )
    );
}

#[test]
fn any_flipped_magic_byte_is_not_sif() {
    for i in 0..10 {
        let mut bytes = base();
        bytes[MAGIC + i] ^= 0xff;
        assert!(
            matches!(problem(&bytes), Problem::BadMagic { .. }),
            "byte {i}"
        );
    }
    let mut elf = base();
    elf[MAGIC..MAGIC + 10].copy_from_slice(b"\x7fELF\x02\x01\x01\0\0\0");
    assert_eq!(
        problem(&elf).to_string(),
        "not a SIF image (magic is \"\\x7fELF\\x02\\x01\\x01\\0\\0\\0\", expected \"SIF_MAGIC\\0\")"
    );
}

#[test]
fn other_versions_are_refused() {
    for version in [b"02\0", b"01 ", b"\0\0\0", b"1\0\0"] {
        let mut bytes = base();
        bytes[VERSION..VERSION + 3].copy_from_slice(version);
        assert_eq!(problem(&bytes), Problem::BadVersion { found: *version });
    }
}

#[test]
fn descriptor_table_outside_the_file() {
    let mut bytes = base();
    set_i64(&mut bytes, DESC_OFFSET, LEN as i64);
    assert!(matches!(
        problem(&bytes),
        Problem::PastEnd {
            what: Region::DescriptorTable,
            ..
        }
    ));
    set_i64(&mut bytes, DESC_OFFSET, i64::MAX - 100);
    assert!(matches!(
        problem(&bytes),
        Problem::Overflow {
            what: Region::DescriptorTable,
            ..
        }
    ));
    set_i64(&mut bytes, DESC_OFFSET, -1);
    assert_eq!(
        problem(&bytes),
        Problem::Negative {
            field: Field::Header("descriptors offset"),
            value: -1
        }
    );
    set_i64(&mut bytes, DESC_OFFSET, 0);
    assert!(matches!(
        problem(&bytes),
        Problem::Overlap {
            what: Region::DescriptorTable,
            other: Region::Header,
            ..
        }
    ));
}

#[test]
fn object_offsets_and_sizes_outside_the_data() {
    let cases: &[(usize, i64, Expect)] = &[
        (OFFSET, LEN as i64, |p| {
            matches!(
                p,
                Problem::OutsideData {
                    what: Region::Object { id: 2 },
                    start: 40960,
                    ..
                }
            )
        }),
        (OFFSET, 100, |p| {
            matches!(
                p,
                Problem::OutsideData {
                    what: Region::Object { id: 2 },
                    start: 100,
                    ..
                }
            )
        }),
        (OFFSET, -5, |p| {
            *p == Problem::Negative {
                field: Field::Object {
                    id: 2,
                    field: "offset",
                },
                value: -5,
            }
        }),
        (OFFSET, i64::MAX - 10, |p| {
            matches!(
                p,
                Problem::Overflow {
                    what: Region::Object { id: 2 },
                    ..
                }
            )
        }),
        (SIZE, -1, |p| {
            *p == Problem::Negative {
                field: Field::Object {
                    id: 2,
                    field: "size",
                },
                value: -1,
            }
        }),
        (SIZE, 4097, |p| {
            matches!(
                p,
                Problem::OutsideData {
                    what: Region::Object { id: 2 },
                    end: 40961,
                    ..
                }
            )
        }),
        (SIZE, i64::MAX, |p| matches!(p, Problem::Overflow { .. })),
    ];
    for (field, value, expected) in cases {
        let mut bytes = base();
        set_i64(&mut bytes, desc(1, *field), *value);
        let p = problem(&bytes);
        assert!(expected(&p), "field {field} = {value}: {p}");
    }
}

#[test]
fn overlapping_objects() {
    let mut bytes = base();
    set_i64(&mut bytes, desc(1, OFFSET), 32768);
    assert_eq!(
        problem(&bytes),
        Problem::Overlap {
            what: Region::Object { id: 2 },
            start: 32768,
            end: 36864,
            other: Region::Object { id: 1 },
            other_start: 32768,
            other_end: 32772,
        }
    );
    assert_eq!(
        problem(&bytes).to_string(),
        "object 2 (bytes 32768..36864) overlaps object 1 (bytes 32768..32772)"
    );
    // Object 1 ending one byte inside object 2.
    let mut bytes = base();
    set_i64(&mut bytes, desc(0, OFFSET), 36860);
    set_i64(&mut bytes, desc(0, SIZE), 5);
    assert!(matches!(problem(&bytes), Problem::Overlap { .. }));
    // Touching is fine.
    let mut bytes = base();
    set_i64(&mut bytes, desc(0, OFFSET), 36860);
    set_i64(&mut bytes, desc(0, SIZE), 4);
    assert!(Image::read(bytes.as_slice(), None).is_ok());
}

#[test]
fn two_primary_partitions() {
    let mut bytes = base();
    // Object 1 (Raw/System) becomes a second *System.
    set_u32(&mut bytes, desc(0, EXTRA + 4), 2);
    let image = Image::read(bytes.as_slice(), None).expect("structure is fine");
    let err = image.primary_partition().unwrap_err();
    assert_eq!(
        err.problem(),
        Some(&Problem::MultiplePrimaryPartitions { ids: vec![1, 2] })
    );
    assert_eq!(
        err.to_string(),
        "<memory>: 2 primary system partitions (objects 1 and 2); an image must have exactly one"
    );
    // siftool still lists it.
    assert!(String::from_utf8(siftool::list(image.descriptors()))
        .unwrap()
        .contains("|FS (Raw/*System/386)"));
}

#[test]
fn absurd_or_disagreeing_counts() {
    let cases: &[(usize, i64, Problem)] = &[
        (
            TOTAL,
            1 << 40,
            Problem::TooManyDescriptors {
                total: 1 << 40,
                max: 4096,
            },
        ),
        (
            TOTAL,
            i64::MAX,
            Problem::TooManyDescriptors {
                total: i64::MAX,
                max: 4096,
            },
        ),
        (
            TOTAL,
            -1,
            Problem::Negative {
                field: Field::Header("descriptors total"),
                value: -1,
            },
        ),
        (
            TOTAL,
            47,
            Problem::DescriptorSizeMismatch {
                size: 28080,
                total: 47,
                expected: 27495,
            },
        ),
        (
            DESC_SIZE,
            28081,
            Problem::DescriptorSizeMismatch {
                size: 28081,
                total: 48,
                expected: 28080,
            },
        ),
        (
            FREE,
            47,
            Problem::FreeCountMismatch {
                free: 47,
                total: 48,
                used: 2,
            },
        ),
        (
            FREE,
            -3,
            Problem::Negative {
                field: Field::Header("descriptors free"),
                value: -3,
            },
        ),
        (
            DATA_SIZE,
            1 << 50,
            Problem::PastEnd {
                what: Region::DataSection,
                start: DATA,
                end: DATA + (1 << 50),
                len: LEN as u64,
            },
        ),
        (
            DATA_SIZE,
            -8784,
            Problem::Negative {
                field: Field::Header("data size"),
                value: -8784,
            },
        ),
        (
            DATA_OFFSET,
            0,
            Problem::Overlap {
                what: Region::DataSection,
                start: 0,
                end: 8784,
                other: Region::Header,
                other_start: 0,
                other_end: 128,
            },
        ),
    ];
    for (field, value, expected) in cases {
        let mut bytes = base();
        set_i64(&mut bytes, *field, *value);
        assert_eq!(&problem(&bytes), expected, "header field {field} = {value}");
    }
}

#[test]
fn zero_and_duplicate_ids() {
    let mut bytes = base();
    set_u32(&mut bytes, desc(0, ID), 0);
    assert_eq!(problem(&bytes), Problem::ZeroId { slot: 0 });
    let mut bytes = base();
    set_u32(&mut bytes, desc(1, ID), 1);
    assert_eq!(
        problem(&bytes),
        Problem::DuplicateId {
            id: 1,
            first: 0,
            second: 1
        }
    );
}

#[test]
fn broken_root_squashfs() {
    let mut bytes = base();
    bytes[SQUASHFS..SQUASHFS + 4].copy_from_slice(b"sqsh");
    assert_eq!(
        run_problem(&bytes),
        Problem::SquashfsMagic {
            id: 2,
            found: *b"sqsh"
        }
    );
    let mut bytes = base();
    bytes[SQUASHFS + 20] = 42;
    assert_eq!(
        run_problem(&bytes),
        Problem::SquashfsCompression { id: 2, value: 42 }
    );
    let mut bytes = base();
    set_i64(&mut bytes, SQUASHFS + 40, 1 << 20);
    assert_eq!(
        run_problem(&bytes),
        Problem::SquashfsTruncated {
            id: 2,
            bytes_used: 1 << 20,
            size: 4096
        }
    );
    let mut bytes = base();
    set_u32(&mut bytes, desc(1, EXTRA), 2); // Ext3
    assert!(matches!(
        run_problem(&bytes),
        Problem::NotSquashfs { id: 2, .. }
    ));
    let mut bytes = base();
    set_i64(&mut bytes, desc(1, SIZE), 50);
    assert_eq!(
        run_problem(&bytes),
        Problem::SuperblockTruncated { id: 2, size: 50 }
    );
}

#[test]
fn unusable_sources_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Image::open(dir.path()).unwrap_err();
    assert!(matches!(err, SifError::Io { .. }), "{err}");
    let err = Image::open(dir.path().join("missing.sif")).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing.sif: cannot open the image"),
        "{err}"
    );
}

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_corruption_never_panics() {
    let full = base();
    let mut rng = Rng(0x5eed_cafe_f00d_beef);
    // The bytes that matter: header, the two used descriptors, the superblock.
    let hot: Vec<usize> = (0..128)
        .chain(TABLE..TABLE + 2 * DESC)
        .chain(SQUASHFS..SQUASHFS + 96)
        .collect();
    for _ in 0..4000 {
        let mut bytes = full.clone();
        for _ in 0..1 + rng.below(8) {
            let at = hot[rng.below(hot.len())];
            bytes[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => bytes[at] ^ (1 << rng.below(8)),
                _ => rng.next() as u8,
            };
        }
        if rng.below(8) == 0 {
            bytes.truncate(rng.below(LEN));
        }
        exercise(&bytes);
    }
}

#[test]
fn every_corpus_image_survives_single_byte_flips_in_its_metadata() {
    for name in support::IMAGES {
        let full = corpus_bytes(name);
        let end = full.len().min(TABLE + 6 * DESC);
        for at in (0..128).chain(TABLE..end).step_by(3) {
            let mut bytes = full.clone();
            bytes[at] ^= 0x80;
            exercise(&bytes);
        }
    }
}

#[test]
fn an_unvalidated_image_is_validated_before_its_partition_is_used() {
    let mut bytes = base();
    set_i64(&mut bytes, desc(1, OFFSET), 32768);
    let image = Image::read_unvalidated(bytes.as_slice(), None).expect("readable");
    assert!(matches!(
        image.primary_partition().unwrap_err().problem(),
        Some(Problem::Overlap { .. })
    ));
    assert!(image.check_runnable_on_host().is_err());
}
