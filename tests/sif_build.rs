//! The writer and `berth sif build`: the writer reproduces the reference
//! implementation's images byte for byte; builds are valid, runnable, reproducible
//! when asked, carry Apptainer's layout and metadata, and leave the source alone.
//! (Needs mksquashfs, unsquashfs and busybox-static.)

#[path = "sif_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::sif::build::{self, BuildOptions, Metadata};
use berth::sif::descriptor::partition_extra;
use berth::sif::write::{self, CreateOptions, ObjectInput};
use berth::sif::{siftool, Arch, DataType, FsType, Image, PartType};
use support::{corpus_bytes, corpus_file};

#[test]
fn the_writer_reproduces_the_reference_images() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CreateOptions {
        launch_script: Vec::new(),
        ..CreateOptions::deterministic()
    };
    let raw = || {
        ObjectInput::bytes(DataType::Partition, vec![0xfa, 0xce, 0xfe, 0xed])
            .with_extra(partition_extra(FsType::Raw, PartType::System, Arch::I386))
    };
    let squashfs = || {
        ObjectInput::partition(
            File::open(corpus_file("input/root.squashfs")).unwrap(),
            FsType::Squashfs,
            PartType::PrimarySystem,
            Arch::I386,
        )
    };
    let one = dir.path().join("one-group.sif");
    write::create(&one, &opts, vec![raw(), squashfs()]).unwrap();
    assert!(fs::read(&one).unwrap() == corpus_bytes("one-group.sif"));

    let ext3 = ObjectInput::partition(
        File::open(corpus_file("input/root.ext3")).unwrap(),
        FsType::Ext3,
        PartType::System,
        Arch::Amd64,
    )
    .with_group(2);
    let two = dir.path().join("two-groups.sif");
    write::create(&two, &opts, vec![raw(), squashfs(), ext3]).unwrap();
    assert!(fs::read(&two).unwrap() == corpus_bytes("two-groups.sif"));
}

#[test]
fn the_writer_refuses_a_second_primary_partition_and_long_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.sif");
    let primary = || {
        ObjectInput::bytes(DataType::Partition, vec![0; 8]).with_extra(partition_extra(
            FsType::Squashfs,
            PartType::PrimarySystem,
            Arch::Amd64,
        ))
    };
    let err = write::create(
        &out,
        &CreateOptions::deterministic(),
        vec![primary(), primary()],
    );
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("only one primary system partition"));
    assert!(!out.exists(), "a failed write leaves no file");
    let long = ObjectInput::bytes(DataType::Generic, vec![1]).with_name(vec![b'n'; 129]);
    assert!(write::create(&out, &CreateOptions::deterministic(), vec![long]).is_err());
    let opts = CreateOptions {
        launch_script: vec![b'#'; 32],
        ..CreateOptions::deterministic()
    };
    assert!(write::create(&out, &opts, vec![]).is_err());
}

#[test]
fn an_empty_image_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("empty.sif");
    write::create(&out, &CreateOptions::deterministic(), vec![]).unwrap();
    let image = Image::open(&out).unwrap();
    assert_eq!(image.file_len(), 32176);
    assert!(image.descriptors().is_empty());
}

#[test]
fn busybox_rootfs_has_a_shell_and_mount_points() {
    let dir = tempfile::tempdir().unwrap();
    build::busybox_rootfs(dir.path()).unwrap();
    let root = dir.path();
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    for d in ["proc", "sys", "dev", "tmp", "home", "etc"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    let tmp_mode = fs::metadata(root.join("tmp")).unwrap().permissions().mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777);
    assert!(fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    assert_eq!(run_retrying_etxtbsy(&root.join("bin/sh")), b"42\n");
}

/// Runs `sh -c 'echo $((6 * 7))'`. A file just written can be "busy" for a moment
/// when another test thread forked while it was open, so retry ETXTBSY briefly.
fn run_retrying_etxtbsy(sh: &Path) -> Vec<u8> {
    for _ in 0..50 {
        match Command::new(sh).args(["-c", "echo $((6 * 7))"]).output() {
            Ok(out) => return out.stdout,
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("{}: {e}", sh.display()),
        }
    }
    panic!("{} stayed busy", sh.display())
}

fn build_busybox(dir: &Path, name: &str, opts: &BuildOptions) -> PathBuf {
    let rootfs = dir.join(format!("{name}.rootfs"));
    fs::create_dir(&rootfs).unwrap();
    build::busybox_rootfs(&rootfs).unwrap();
    let out = dir.join(name);
    build::build(&rootfs, &out, opts).unwrap();
    out
}

/// The squashfs of an image, as a file, for unsquashfs.
fn extract_squashfs(image: &Path, dir: &Path) -> PathBuf {
    let mut img = Image::open(image).unwrap();
    let part = img.primary_partition().unwrap();
    let d = img.descriptor(part.id).unwrap().clone();
    let path = dir.join(format!(
        "{}.squashfs",
        image.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&path, img.read_object(&d).unwrap()).unwrap();
    path
}

fn cat(squashfs: &Path, file: &str) -> String {
    let out = Command::new("unsquashfs")
        .args(["-cat", squashfs.to_str().unwrap(), file])
        .output()
        .unwrap();
    assert!(out.status.success(), "unsquashfs -cat {file}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_busybox_build_is_valid_runnable_and_laid_out_like_apptainer() {
    let dir = tempfile::tempdir().unwrap();
    let out = build_busybox(dir.path(), "bb.sif", &BuildOptions::reproducible(0));
    let mut image = Image::open(&out).unwrap();
    let part = image.check_runnable_on_host().unwrap();
    assert_eq!(part.id, 3);
    assert_eq!(part.offset % 4096, 0);
    assert_eq!(part.arch, Arch::host());
    assert_eq!(image.header().arch(), Arch::host());
    let kinds: Vec<DataType> = image.descriptors().iter().map(|d| d.data_type).collect();
    assert_eq!(
        kinds,
        [
            DataType::Deffile,
            DataType::GenericJson,
            DataType::Partition
        ]
    );
    assert_eq!(image.descriptors()[1].name(), b"inspect-metadata.json");
    // Deterministic: siftool prints no ID and no times.
    let header = String::from_utf8(siftool::header(image.header())).unwrap();
    assert!(
        !header.contains("ID:") && !header.contains("Created At"),
        "{header}"
    );

    let squashfs = extract_squashfs(&out, dir.path());
    let listing = Command::new("unsquashfs")
        .args(["-lls", squashfs.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for path in [
        "squashfs-root/.singularity.d/actions/exec",
        "squashfs-root/.singularity.d/env/01-base.sh",
        "squashfs-root/.singularity.d/env/90-environment.sh",
        "squashfs-root/.singularity.d/env/99-base.sh",
        "squashfs-root/.singularity.d/runscript",
        "squashfs-root/.singularity.d/labels.json",
        "squashfs-root/environment -> .singularity.d/env/90-environment.sh",
        "squashfs-root/bin/busybox",
    ] {
        assert!(listing.contains(path), "{path} missing from:\n{listing}");
    }
    assert!(
        listing.lines().all(|l| l.contains("root/root")),
        "all files owned by root"
    );
    assert!(
        listing.starts_with("drwxr-xr-x"),
        "the root directory is 0755"
    );
    assert!(cat(&squashfs, ".singularity.d/actions/exec").contains("exec \"$@\""));
}

#[test]
fn reproducible_builds_are_identical_and_normal_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = build_busybox(
        dir.path(),
        "a.sif",
        &BuildOptions::reproducible(1_700_000_000),
    );
    let b = build_busybox(
        dir.path(),
        "b.sif",
        &BuildOptions::reproducible(1_700_000_000),
    );
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap());
    let c = build_busybox(dir.path(), "c.sif", &BuildOptions::new());
    let d = build_busybox(dir.path(), "d.sif", &BuildOptions::new());
    let (hc, hd) = (
        Image::open(&c).unwrap().header().clone(),
        Image::open(&d).unwrap().header().clone(),
    );
    assert_ne!(hc.id, hd.id, "each normal build gets its own UUID");
    assert!(hc.id().is_some());
}

#[test]
fn metadata_goes_into_the_image_and_the_source_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    build::busybox_rootfs(&rootfs).unwrap();
    fs::create_dir_all(rootfs.join(".singularity.d/env")).unwrap();
    fs::write(
        rootfs.join(".singularity.d/env/90-environment.sh"),
        "#!/bin/sh\nexport OLD=1",
    )
    .unwrap();
    fs::write(
        rootfs.join(".singularity.d/labels.json"),
        "{\"from.rootfs\": \"yes\"}",
    )
    .unwrap();
    let before = snapshot(&rootfs);

    let definition = b"Bootstrap: scratch\n%environment\n    export GREETING=hello\n".to_vec();
    let mut opts = BuildOptions::reproducible(0);
    opts.metadata = Metadata {
        definition: Some(definition.clone()),
        labels: BTreeMap::from([("maintainer".to_string(), "berth".to_string())]),
        environment: Some("export GREETING=hello".into()),
        runscript: Some("echo running \"$@\"".into()),
    };
    let out = dir.path().join("meta.sif");
    build::build(&rootfs, &out, &opts).unwrap();
    assert_eq!(snapshot(&rootfs), before, "the source directory changed");

    let image = Image::open(&out).unwrap();
    let def = image.descriptor(1).unwrap();
    assert_eq!(image.read_object(def).unwrap(), definition);
    let inspect = image.read_object(image.descriptor(2).unwrap()).unwrap();
    let inspect: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
    let attrs = &inspect["data"]["attributes"];
    assert_eq!(attrs["labels"]["maintainer"], "berth");
    assert_eq!(attrs["labels"]["from.rootfs"], "yes");
    assert!(attrs["environment"]["90-environment.sh"]
        .as_str()
        .unwrap()
        .contains("GREETING=hello"));
    assert_eq!(inspect["type"], "container");

    let squashfs = extract_squashfs(&out, dir.path());
    assert_eq!(
        cat(&squashfs, ".singularity.d/env/90-environment.sh"),
        "#!/bin/sh\nexport OLD=1\nexport GREETING=hello\n"
    );
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&cat(&squashfs, ".singularity.d/labels.json")).unwrap();
    assert_eq!(labels["maintainer"], "berth");
    assert_eq!(labels["from.rootfs"], "yes");
    assert_eq!(labels["org.label-schema.build-arch"], Arch::host().name());
    assert_eq!(
        cat(&squashfs, ".singularity.d/Singularity").as_bytes(),
        definition.as_slice()
    );
    assert_eq!(
        cat(&squashfs, ".singularity.d/runscript"),
        "#!/bin/sh\n\necho running \"$@\"\n"
    );
}

/// Every path under `root` with its metadata that a build could change.
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, u64, Option<PathBuf>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((
                entry.path(),
                meta.permissions().mode(),
                meta.len(),
                fs::read_link(entry.path()).ok(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn an_existing_squashfs_becomes_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("from-squashfs.sif");
    build::from_squashfs(
        &corpus_file("input/root.squashfs"),
        &out,
        &CreateOptions::deterministic(),
        Arch::Amd64,
        &Metadata::default(),
    )
    .unwrap();
    let mut image = Image::open(&out).unwrap();
    let part = image.primary_partition().unwrap();
    let d = image.descriptor(part.id).unwrap().clone();
    assert_eq!(
        image.read_object(&d).unwrap(),
        corpus_bytes("input/root.squashfs")
    );
    // Not a squashfs: refused before anything is written.
    let bad = build::from_squashfs(
        &corpus_file("input/root.ext3"),
        &dir.path().join("bad.sif"),
        &CreateOptions::deterministic(),
        Arch::Amd64,
        &Metadata::default(),
    );
    assert!(bad.unwrap_err().to_string().contains("not a squashfs"));
    assert!(!dir.path().join("bad.sif").exists());
}

fn berth(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args).env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.sif");
    let b = dir.path().join("b.sif");
    for out in [&a, &b] {
        let o = berth(
            &[
                "sif",
                "build",
                "--busybox",
                "--compression",
                "zstd",
                "--label",
                "k=v",
                out.to_str().unwrap(),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        assert!(o.status.success(), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("berth: wrote "));
    }
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap());
    let mut image = Image::open(&a).unwrap();
    let sb = image.root_superblock().unwrap();
    assert_eq!(sb.compression().unwrap().name(), "zstd");
    assert_eq!(sb.mkfs_time, 1_700_000_000);

    let check = berth(&["sif", "check", a.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{check:?}");

    let usage = berth(&["sif", "build", "--busybox", "x", "y"], &[]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = berth(&["sif", "build", "--compression", "lzma", "x", "y"], &[]);
    assert_eq!(usage.status.code(), Some(2));
    let missing = berth(&["sif", "build", "/nonexistent/rootfs", "y.sif"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "berth: /nonexistent/rootfs: not a directory\n"
    );
}
