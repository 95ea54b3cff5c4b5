//! Opening and validating an image (header, descriptors, root partition lookup,
//! superblock check, host architecture check) costs the same for a 1 MiB and a 1 GiB
//! image: it reads about 28 KiB whatever the size.
//!
//! `cargo bench --bench sif_open`

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use berth::sif::descriptor::partition_extra;
use berth::sif::write::{self, CreateOptions, ObjectInput};
use berth::sif::{Arch, DataType, FsType, Image, PartType};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// A squashfs superblock berth accepts (gzip, 128 KiB blocks, 4 KiB used).
fn superblock() -> Vec<u8> {
    let mut sb = vec![0u8; 4096];
    sb[0..4].copy_from_slice(b"hsqs");
    sb[12..16].copy_from_slice(&(128u32 << 10).to_le_bytes());
    sb[20..22].copy_from_slice(&1u16.to_le_bytes());
    sb[22..24].copy_from_slice(&17u16.to_le_bytes());
    sb[28..30].copy_from_slice(&4u16.to_le_bytes());
    sb[40..48].copy_from_slice(&4096u64.to_le_bytes());
    sb
}

/// Writes an image of exactly `total` bytes laid out as `berth sif build` lays it out
/// (definition, inspect metadata, root partition at 32768), the partition filling the
/// rest. With `sparse`, the partition's bytes after its superblock are a hole.
fn make_image(path: &Path, total: u64, sparse: bool) {
    const PARTITION_OFFSET: u64 = 32768;
    let partition_size = total - PARTITION_OFFSET;
    let mut data = superblock();
    if !sparse {
        data.resize(partition_size as usize, 0);
    }
    let objects = vec![
        ObjectInput::bytes(DataType::Deffile, Vec::new()),
        ObjectInput::bytes(DataType::GenericJson, br#"{"type":"container"}"#.to_vec())
            .with_name("inspect-metadata.json"),
        ObjectInput::bytes(DataType::Partition, data).with_extra(partition_extra(
            FsType::Squashfs,
            PartType::PrimarySystem,
            Arch::host(),
        )),
    ];
    write::create(path, &CreateOptions::deterministic(), objects).unwrap();
    if sparse {
        // Grow the partition to the full size, as a hole.
        let f = OpenOptions::new().write(true).open(path).unwrap();
        let size_field = 4096 + 2 * 585 + 25;
        f.write_all_at(&(partition_size as i64).to_le_bytes(), size_field)
            .unwrap();
        let data_size = (total - 32176) as i64;
        f.write_all_at(&data_size.to_le_bytes(), 120).unwrap();
        f.set_len(total).unwrap();
    }
    let image = Image::open(path).unwrap();
    assert_eq!(image.file_len(), total);
    assert_eq!(
        image.check_runnable_on_host().unwrap().offset,
        PARTITION_OFFSET
    );
}

fn bench_open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let images = [
        ("1MiB", 1u64 << 20, false),
        ("1GiB-sparse", 1u64 << 30, true),
    ];
    let mut group = c.benchmark_group("sif_open_validate_check");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, size, sparse) in images {
        let path = dir.path().join(format!("{name}.sif"));
        make_image(&path, size, sparse);
        group.bench_with_input(BenchmarkId::new("open_path", name), &path, |b, path| {
            b.iter(|| {
                let image = Image::open(path).unwrap();
                image.check_runnable_on_host().unwrap()
            })
        });
        // What the plugin does: the job user already opened the file.
        let file = File::open(&path).unwrap();
        group.bench_with_input(
            BenchmarkId::new("from_open_file", name),
            &file,
            |b, file| {
                b.iter(|| {
                    let dup = file.try_clone().unwrap();
                    let image = Image::from_file_named(dup, "image.sif").unwrap();
                    image.check_runnable_on_host().unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_open);
criterion_main!(benches);
