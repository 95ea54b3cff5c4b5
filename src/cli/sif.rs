//! `berth sif`: siftool-compatible inspection (`header`, `list`, `info`, `dump`), the
//! check berth runs before using an image (`check`), and `build`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::sif::build::{self, BuildOptions, Metadata};
use crate::sif::squashfs::Compression;
use crate::sif::{siftool, Arch, Image, SifError};

/// Inspect, check and build SIF images.
#[derive(Debug, Args)]
pub struct SifArgs {
    #[command(subcommand)]
    pub command: SifCommand,
}

/// The `berth sif` subcommands.
#[derive(Debug, Subcommand)]
pub enum SifCommand {
    /// Print the global header (as `siftool header` does).
    Header { image: PathBuf },
    /// List the data objects (as `siftool list` does).
    List { image: PathBuf },
    /// Print one data object's descriptor (as `siftool info` does).
    Info { id: u32, image: PathBuf },
    /// Write one data object's bytes to stdout (as `siftool dump` does).
    Dump { id: u32, image: PathBuf },
    /// Validate the image and say whether berth can run it on this host (exit 1 if not).
    Check { image: PathBuf },
    /// Build a SIF image from a root filesystem directory (or a squashfs file).
    Build(BuildArgs),
    /// Verify the signature of the image's root filesystem against trusted keys, as
    /// `require_signature=yes` does before a step (exit 1 where berth would refuse).
    Verify(VerifyArgs),
}

/// `berth sif verify IMG --keys PATH [--keys PATH...]`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub image: PathBuf,
    /// A trusted key file (OpenPGP public keys, armored or binary, or a PEM public
    /// key for DSSE); repeatable, or comma-separated. Default: signature_keys= of
    /// berth's line in plugstack.conf.
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    pub keys: Vec<PathBuf>,
    /// Also accept legacy (SIF 1) signatures, which do not protect the header and
    /// descriptors (as `apptainer verify --legacy-insecure`; berth's steps never do).
    #[arg(long)]
    pub legacy_insecure: bool,
}

/// `berth sif build [OPTIONS] ROOTFS OUT.sif`, or `berth sif build --busybox OUT.sif`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// ROOTFS (a directory, or an existing squashfs file) and OUT.sif; with --busybox,
    /// only OUT.sif.
    #[arg(required = true, num_args = 1..=2, value_name = "[ROOTFS] OUT")]
    pub paths: Vec<PathBuf>,
    /// Build from a fresh busybox-static rootfs (for tests and demos).
    #[arg(long)]
    pub busybox: bool,
    /// Squashfs compression: gzip (default: what every Apptainer reads), zstd or lz4
    /// (faster first reads on a fresh mount), xz, lzo.
    #[arg(long, default_value = "gzip", value_parser = parse_compression)]
    pub compression: Compression,
    /// Reproducible output: no UUID, zero times, file times set to $SOURCE_DATE_EPOCH
    /// (or 0). Implied when SOURCE_DATE_EPOCH is set, as with `apptainer build`.
    #[arg(long)]
    pub deterministic: bool,
    /// Definition file to store in the image.
    #[arg(long, value_name = "FILE")]
    pub definition: Option<PathBuf>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Shell code for /.singularity.d/env/90-environment.sh.
    #[arg(long, value_name = "FILE")]
    pub environment: Option<PathBuf>,
    /// Script for /.singularity.d/runscript.
    #[arg(long, value_name = "FILE")]
    pub runscript: Option<PathBuf>,
    /// Architecture to record (default: that of the rootfs's /bin/sh, else the host's).
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// mksquashfs compressor threads (default: all CPUs).
    #[arg(long)]
    pub processors: Option<u32>,
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    match Compression::from_name(s) {
        Some(c) if c.kernel_supports() => Ok(c),
        _ => Err(format!(
            "unknown compression {s:?} (gzip, zstd, lz4, xz, lzo)"
        )),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {s:?} is not KEY=VALUE")),
    }
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::from_name(s).ok_or_else(|| format!("unknown architecture {s:?}"))
}

/// Runs a `berth sif` subcommand; returns the exit status.
pub fn run(args: SifArgs) -> i32 {
    let result = match args.command {
        SifCommand::Header { image } => header(&image),
        SifCommand::List { image } => list(&image),
        SifCommand::Info { id, image } => info(id, &image),
        SifCommand::Dump { id, image } => dump(id, &image),
        SifCommand::Check { image } => check(&image),
        SifCommand::Build(args) => build_image(args),
        SifCommand::Verify(args) => verify_image(&args),
    };
    match result {
        Ok(()) => 0,
        Err(Failure::Sif(e)) => {
            eprintln!("berth: {e}");
            1
        }
        Err(Failure::Refused(msg)) => {
            eprintln!("berth: {msg}");
            1
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("berth: {msg}");
            2
        }
        // A closed pipe (`berth sif dump 2 img | head`) is not worth a message.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 1,
        Err(Failure::Output(e)) => {
            eprintln!("berth: cannot write the output: {e}");
            1
        }
    }
}

enum Failure {
    Sif(SifError),
    /// The image is not accepted (a `berth:` line, exit 1).
    Refused(String),
    Usage(String),
    Output(io::Error),
}

impl From<SifError> for Failure {
    fn from(e: SifError) -> Self {
        Failure::Sif(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

/// Opens an image for printing: only what siftool itself requires is checked, so an
/// image berth would refuse can still be looked at.
fn open_for_printing(path: &Path) -> Result<Image, Failure> {
    let file = std::fs::File::open(path).map_err(|e| SifError::io(path, "open the image", e))?;
    Ok(Image::read_unvalidated(file, Some(path.to_path_buf()))?)
}

fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

fn header(path: &Path) -> Result<(), Failure> {
    let image = open_for_printing(path)?;
    print(&siftool::header(image.header()))
}

fn list(path: &Path) -> Result<(), Failure> {
    let image = open_for_printing(path)?;
    print(&siftool::list(image.descriptors()))
}

fn info(id: u32, path: &Path) -> Result<(), Failure> {
    let image = open_for_printing(path)?;
    let d = image.descriptor(id)?;
    let text = siftool::info(d).map_err(|problem| SifError::Image {
        path: path.to_path_buf(),
        problem,
    })?;
    print(&text)
}

fn dump(id: u32, path: &Path) -> Result<(), Failure> {
    let image = open_for_printing(path)?;
    let d = image.descriptor(id)?;
    let mut out = io::stdout().lock();
    match image.copy_object(d, &mut out) {
        Ok(_) => Ok(out.flush()?),
        Err(SifError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            Err(Failure::Output(source))
        }
        Err(e) => Err(e.into()),
    }
}

fn check(path: &Path) -> Result<(), Failure> {
    let image = Image::open(path)?;
    let partition = image.check_runnable_on_host()?;
    let sb = image.root_superblock()?;
    let h = image.header();
    let compression = sb.compression().map_or("unknown", |c| c.name());
    let text = format!(
        "{path}: berth can run this image on this host ({host})\n\
         \x20 image:          SIF {version}, {used} of {total} descriptors in use, {len} bytes\n\
         \x20 root partition: object {id}, {fs}/{pt}/{arch}, {size} bytes at offset {offset}\n\
         \x20 squashfs:       version 4.0, {compression}, {block} KiB blocks, {inodes} inodes\n",
        path = path.display(),
        host = Arch::host(),
        version = String::from_utf8_lossy(h.version()),
        used = image.descriptors().len(),
        total = h.descriptors_total,
        len = image.file_len(),
        id = partition.id,
        fs = partition.fs_type,
        pt = partition.part_type,
        arch = partition.arch,
        size = partition.size,
        offset = partition.offset,
        block = sb.block_size / 1024,
        inodes = sb.inodes,
    );
    print(text.as_bytes())
}

fn verify_image(args: &VerifyArgs) -> Result<(), Failure> {
    use crate::sif::trust::TrustedKeys;
    use crate::sif::verify;
    let paths = if args.keys.is_empty() {
        plugstack_signature_keys()?
    } else {
        args.keys.clone()
    };
    let keys = TrustedKeys::load(&paths).map_err(|e| Failure::Usage(e.to_string()))?;
    let image = Image::open(&args.image)?;
    let root = image.primary_partition()?;
    let opts = verify::Options {
        legacy: args.legacy_insecure,
    };
    match verify::verify_object(&image, root.id, &keys, opts) {
        Ok(v) => print(verified_text(&image, &args.image, &v).as_bytes()),
        Err(refusal) => Err(Failure::Refused(format!(
            "{}: not verified: {refusal}; signer: {}; trusted keys: {}",
            args.image.display(),
            verify::signers(&image),
            keys.describe()
        ))),
    }
}

/// What `apptainer verify` prints for a verified image: signer, key, the objects.
fn verified_text(image: &Image, path: &Path, v: &crate::sif::verify::Verified) -> String {
    let mut out = String::new();
    out += &format!(
        "Verifying image {} ({} signature, object {})\n",
        path.display(),
        v.format,
        v.signature_id
    );
    if let Some(signer) = &v.signer {
        out += &format!("[LOCAL]   Signing entity: {signer}\n");
    }
    out += &format!("[LOCAL]   Fingerprint: {}\n", v.key);
    out += "Objects verified:\nID  |GROUP   |LINK    |TYPE\n------------------------------------------------\n";
    for id in &v.objects {
        if let Some(d) = image.descriptors().iter().find(|d| d.id == *id) {
            let group = match d.group_id() {
                0 => "NONE".to_string(),
                g => g.to_string(),
            };
            let link = match d.link() {
                crate::sif::Link::None => "NONE".to_string(),
                crate::sif::Link::Object(o) => o.to_string(),
                crate::sif::Link::Group(g) => format!("{g} (G)"),
            };
            out += &format!("{:<4}|{:<8}|{:<8}|{}\n", d.id, group, link, d.data_type);
        }
    }
    out += &format!("Verified signature(s) from image '{}'\n", path.display());
    out
}

/// signature_keys= of berth's plugstack.conf line, when `--keys` is not given.
fn plugstack_signature_keys() -> Result<Vec<PathBuf>, Failure> {
    let conf = crate::doctor::slurm_conf::default_slurm_conf();
    let config = crate::doctor::slurm_conf::berth_config(&conf)
        .map_err(|e| Failure::Usage(format!("no --keys given and {e}")))?;
    if config.signature_keys.is_empty() {
        return Err(Failure::Usage(
            "no --keys given and berth's plugstack.conf line has no signature_keys=".into(),
        ));
    }
    Ok(config.signature_keys)
}

fn build_image(args: BuildArgs) -> Result<(), Failure> {
    let (rootfs, out) = match (args.busybox, args.paths.as_slice()) {
        (true, [out]) => (None, out.clone()),
        (false, [rootfs, out]) => (Some(rootfs.clone()), out.clone()),
        (true, _) => return Err(Failure::Usage("with --busybox, give only OUT.sif".into())),
        (false, _) => return Err(Failure::Usage("give ROOTFS and OUT.sif".into())),
    };
    let opts = build_options(&args)?;
    let report_line = match rootfs {
        None => {
            let dir = busybox_dir()?;
            let result = build::busybox_rootfs(&dir).and_then(|()| build::build(&dir, &out, &opts));
            let _ = std::fs::remove_dir_all(&dir);
            let r = result?;
            format!(
                "{} ({}, squashfs {} bytes)",
                out.display(),
                r.arch,
                r.squashfs_size
            )
        }
        Some(rootfs) if rootfs.is_file() => {
            let arch = opts.arch.unwrap_or_else(Arch::host);
            build::from_squashfs(&rootfs, &out, &opts.create, arch, &opts.metadata)?;
            format!("{} ({arch}, from {})", out.display(), rootfs.display())
        }
        Some(rootfs) => {
            let r = build::build(&rootfs, &out, &opts)?;
            format!(
                "{} ({}, squashfs {} bytes)",
                out.display(),
                r.arch,
                r.squashfs_size
            )
        }
    };
    print(format!("berth: wrote {report_line}\n").as_bytes())
}

fn build_options(args: &BuildArgs) -> Result<BuildOptions, Failure> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let mut opts = match (&epoch, args.deterministic) {
        (Some(e), _) => {
            let t = e.trim().parse::<u32>().map_err(|_| {
                Failure::Usage(format!("SOURCE_DATE_EPOCH={e:?} is not a Unix time"))
            })?;
            BuildOptions::reproducible(t)
        }
        (None, true) => BuildOptions::reproducible(0),
        (None, false) => BuildOptions::new(),
    };
    opts.mksquashfs.compression = args.compression;
    opts.mksquashfs.processors = args.processors;
    opts.arch = args.arch;
    opts.metadata = Metadata {
        definition: args.definition.as_deref().map(read_file).transpose()?,
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        environment: args.environment.as_deref().map(read_text).transpose()?,
        runscript: args.runscript.as_deref().map(read_text).transpose()?,
    };
    Ok(opts)
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Sif(SifError::io(path, "read", e)))
}

fn read_text(path: &Path) -> Result<String, Failure> {
    let bytes = read_file(path)?;
    String::from_utf8(bytes).map_err(|_| {
        Failure::Sif(SifError::Input {
            path: path.to_path_buf(),
            reason: "is not UTF-8 text".into(),
        })
    })
}

/// A fresh directory for a busybox rootfs (never one that already exists).
fn busybox_dir() -> Result<PathBuf, Failure> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let base = std::env::temp_dir();
    let mut last = None;
    for attempt in 0..100 {
        let dir = base.join(format!(
            "berth-busybox.{}.{nanos}.{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(Failure::Sif(SifError::io(
        base,
        "create a directory",
        last.unwrap_or_else(|| io::Error::other("no attempt made")),
    )))
}
