//! The reference implementation's test images: every one parses and validates, and
//! `berth sif header|list|info|dump` print exactly what `siftool` printed for them.

#[path = "sif_support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::sif::{siftool, Arch, FsType, Image, PartType, Problem, ReadAt};
use support::*;

/// A predicate on the problem a case must report.
type Expect = fn(&Problem) -> bool;

fn open_unvalidated(name: &str) -> Image {
    let path = corpus_file(name);
    let file = std::fs::File::open(&path).unwrap();
    Image::read_unvalidated(file, Some(path)).unwrap()
}

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_corpus_image_opens_and_validates() {
    for name in IMAGES {
        let image = Image::open(corpus_file(name));
        assert!(image.is_ok(), "{name}: {}", image.unwrap_err());
    }
}

#[test]
fn header_matches_siftool() {
    for (golden_name, image) in HEADER_AND_LIST {
        let got = siftool::header(open_unvalidated(image).header());
        let want = golden("TestApp_Header", golden_name);
        assert!(got == want, "{golden_name}: {}", show_diff(&got, &want));
    }
}

#[test]
fn list_matches_siftool() {
    for (golden_name, image) in HEADER_AND_LIST {
        let got = siftool::list(open_unvalidated(image).descriptors());
        let want = golden("TestApp_List", golden_name);
        assert!(got == want, "{golden_name}: {}", show_diff(&got, &want));
    }
}

#[test]
fn info_matches_siftool() {
    for (golden_name, image, id) in INFO {
        let img = open_unvalidated(image);
        let got = siftool::info(img.descriptor(*id).unwrap()).unwrap();
        let want = golden("TestApp_Info", golden_name);
        assert!(got == want, "{golden_name}: {}", show_diff(&got, &want));
    }
}

#[test]
fn dump_matches_siftool() {
    for (golden_name, image, id) in DUMP {
        let img = open_unvalidated(image);
        let mut got = Vec::new();
        img.copy_object(img.descriptor(*id).unwrap(), &mut got)
            .unwrap();
        assert_eq!(got, golden("TestApp_Dump", golden_name), "{golden_name}");
    }
}

#[test]
fn the_command_prints_the_goldens_byte_for_byte() {
    for (golden_name, image) in HEADER_AND_LIST {
        let path = corpus_file(image);
        let path = path.to_str().unwrap();
        for (sub, kind) in [("header", "TestApp_Header"), ("list", "TestApp_List")] {
            let out = berth(&["sif", sub, path]);
            assert!(out.status.success(), "{sub} {image}: {:?}", out);
            let want = golden(kind, golden_name);
            assert!(
                out.stdout == want,
                "{sub} {golden_name}: {}",
                show_diff(&out.stdout, &want)
            );
        }
    }
    for (kind, table) in [("TestApp_Info", INFO), ("TestApp_Dump", DUMP)] {
        let sub = if kind == "TestApp_Info" {
            "info"
        } else {
            "dump"
        };
        for (golden_name, image, id) in table {
            let path = corpus_file(image);
            let out = berth(&["sif", sub, &id.to_string(), path.to_str().unwrap()]);
            assert!(out.status.success(), "{sub} {id} {image}: {:?}", out);
            assert_eq!(out.stdout, golden(kind, golden_name), "{sub} {golden_name}");
        }
    }
}

#[test]
fn info_and_dump_refuse_missing_ids() {
    let path = corpus_file("one-group.sif");
    let path = path.to_str().unwrap();
    let out = berth(&["sif", "info", "9", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("berth: {path}: no object with id 9\n")
    );
    let out = berth(&["sif", "dump", "0", path]);
    assert_eq!(out.status.code(), Some(1));
    let empty = corpus_file("empty.sif");
    let out = berth(&["sif", "info", "1", empty.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no data objects"));
}

#[test]
fn finds_the_primary_partition_like_apptainer() {
    let mut image = Image::open(corpus_file("one-group.sif")).unwrap();
    let p = image.primary_partition().unwrap();
    assert_eq!((p.id, p.group_id, p.offset, p.size), (2, 1, 36864, 4096));
    assert_eq!(p.fs_type, FsType::Squashfs);
    assert_eq!(p.part_type, PartType::PrimarySystem);
    assert_eq!(p.arch, Arch::I386);
    let sb = image.root_superblock().unwrap();
    assert_eq!(sb.compression().map(|c| c.name()), Some("gzip"));

    let mut two = Image::open(corpus_file("two-groups.sif")).unwrap();
    assert_eq!(two.primary_partition().unwrap().id, 2);
    assert_eq!(two.group_ids(), vec![1, 2]);
    assert_eq!(two.group(2).map(|d| d.id).collect::<Vec<_>>(), vec![3]);
}

#[test]
fn a_386_image_runs_on_amd64_but_not_on_arm64() {
    let no_binfmt = Path::new("/nonexistent");
    let mut image = Image::open(corpus_file("one-group.sif")).unwrap();
    assert_eq!(
        image.check_runnable_on(Arch::Amd64, no_binfmt).unwrap().id,
        2
    );
    let err = image.check_runnable_on(Arch::Arm64, no_binfmt).unwrap_err();
    assert_eq!(
        err.problem(),
        Some(&Problem::ArchMismatch {
            image: Arch::I386,
            host: Arch::Arm64
        })
    );
}

#[test]
fn images_without_a_runnable_root_say_why() {
    let cases: &[(&str, Expect)] = &[
        ("empty.sif", |p| matches!(p, Problem::NoPrimaryPartition)),
        ("one-object-sbom.sif", |p| {
            matches!(p, Problem::NoPrimaryPartition)
        }),
        ("one-group-signed-legacy.sif", |p| {
            matches!(p, Problem::SuperblockTruncated { id: 2, size: 4 })
        }),
    ];
    for (name, expected) in cases {
        let mut image = Image::open(corpus_file(name)).unwrap();
        let err = image.check_runnable_on_host().unwrap_err();
        assert!(expected(err.problem().unwrap()), "{name}: {err}");
    }
}

#[test]
fn check_command_says_whether_berth_can_run_the_image() {
    let good = corpus_file("one-group.sif");
    let out = berth(&["sif", "check", good.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if Arch::host() == Arch::Amd64 || Arch::host() == Arch::I386 {
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains("berth can run this image on this host"),
            "{stdout}"
        );
        assert!(stdout.contains("object 2, Squashfs/*System/386, 4096 bytes at offset 36864"));
    }
    let bad = corpus_file("empty.sif");
    let out = berth(&["sif", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "berth: {}: no primary system partition (no FS object of partition type *System): \
             not a container image\n",
            bad.display()
        )
    );
}

/// A source that records every read.
struct Recording {
    bytes: Vec<u8>,
    reads: RefCell<Vec<(u64, usize)>>,
}

impl ReadAt for Recording {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads.borrow_mut().push((offset, buf.len()));
        self.bytes.as_slice().read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

#[test]
fn opening_reads_header_table_and_superblock_only() {
    let source = Recording {
        bytes: corpus_bytes("two-groups.sif"),
        reads: RefCell::new(Vec::new()),
    };
    let mut image = Image::read(&source, Some(PathBuf::from("two-groups.sif"))).unwrap();
    image
        .check_runnable_on(Arch::Amd64, Path::new("/nonexistent"))
        .unwrap();
    assert_eq!(
        *source.reads.borrow(),
        vec![(0, 128), (4096, 48 * 585), (36864, 96)]
    );
}
