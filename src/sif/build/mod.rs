//! `berth sif build`: a root filesystem directory -> mksquashfs -> a SIF image laid out
//! as `apptainer build` lays it out.
//!
//! The image holds, in group 1: the definition file (`Def.FILE`, empty if there is
//! none), `inspect-metadata.json` (`JSON.Generic`: labels, environment, runscript and
//! definition, as `apptainer inspect` reads them), and the squashfs as the primary
//! system partition (`FS`, Squashfs/*System, 4096-aligned), whose architecture is that
//! of the rootfs's `/bin/sh` (else of its first ELF executable, else the host's).
//!
//! The squashfs gets Apptainer's `/.singularity.d` layout (see [`layout`]) without
//! touching the source directory: missing entries are added with mksquashfs pseudo
//! definitions, and the few files berth writes itself (labels, environment,
//! definition, runscript) replace the source's copies through mksquashfs excludes.

pub mod busybox;
pub mod layout;
pub mod mksquashfs;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use self::busybox::{busybox_rootfs, busybox_rootfs_from, find_busybox};
use self::layout::Kind;
pub use self::mksquashfs::Mksquashfs;
use super::arch::Arch;
use super::error::SifError;
use super::format::{DataType, FsType, PartType};
use super::header::Header;
use super::siftool::gotime;
use super::squashfs::{Superblock, SUPERBLOCK_LEN};
use super::write::{self, CreateOptions, ObjectInput};
use super::Result;

/// Name of the JSON object Apptainer's `inspect` reads.
pub const INSPECT_METADATA_JSON: &str = "inspect-metadata.json";

/// What goes into the image besides the filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The definition file (kept as `Def.FILE` and `/.singularity.d/Singularity`).
    pub definition: Option<Vec<u8>>,
    /// Labels, added to the build labels (`/.singularity.d/labels.json`).
    pub labels: BTreeMap<String, String>,
    /// Shell code for `/.singularity.d/env/90-environment.sh` (a definition's
    /// `%environment`).
    pub environment: Option<String>,
    /// The body of `/.singularity.d/runscript` (a definition's `%runscript`).
    pub runscript: Option<String>,
}

/// How to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub mksquashfs: Mksquashfs,
    /// Launch script, UUID and time of the SIF.
    pub create: CreateOptions,
    /// The image's architecture; found in the rootfs when `None`.
    pub arch: Option<Arch>,
    pub metadata: Metadata,
}

impl BuildOptions {
    /// A normal build: random UUID, current time, gzip (what Apptainer writes and every
    /// Apptainer installation reads).
    pub fn new() -> BuildOptions {
        BuildOptions {
            mksquashfs: Mksquashfs::default(),
            create: CreateOptions::new(),
            arch: None,
            metadata: Metadata::default(),
        }
    }

    /// A reproducible build: the same rootfs gives the same bytes. Every file time and
    /// the squashfs time are `time`; the SIF has no UUID and Go's zero time, as
    /// `apptainer build` with `SOURCE_DATE_EPOCH`.
    pub fn reproducible(time: u32) -> BuildOptions {
        BuildOptions {
            mksquashfs: Mksquashfs {
                fixed_time: Some(time),
                ..Mksquashfs::default()
            },
            create: CreateOptions::deterministic(),
            arch: None,
            metadata: Metadata::default(),
        }
    }

    fn label_time(&self) -> i64 {
        match self.mksquashfs.fixed_time {
            Some(t) => i64::from(t),
            None => self.create.time,
        }
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions::new()
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub header: Header,
    pub arch: Arch,
    pub squashfs_size: u64,
}

/// Builds the SIF `out` from the root filesystem directory `rootfs`.
pub fn build(rootfs: &Path, out: &Path, opts: &BuildOptions) -> Result<BuildReport> {
    if !rootfs.is_dir() {
        return Err(SifError::input(rootfs, "not a directory"));
    }
    let arch = match opts.arch {
        Some(arch) => arch,
        None => arch_from_rootfs(rootfs).unwrap_or_else(Arch::host),
    };
    let staging = Staging::new()?;
    let labels = build_labels(rootfs, &opts.metadata, arch, opts.label_time());
    let plan = plan_layout(rootfs, &opts.metadata, &labels)?;
    let pseudo_file = staging.write("pseudo", plan.pseudo_definitions(&staging).as_bytes())?;
    for (name, text) in &plan.staged {
        staging.write(name, text.as_bytes())?;
    }
    let squashfs = staging.path.join("root.squashfs");
    opts.mksquashfs
        .run(rootfs, &squashfs, Some(&pseudo_file), &plan.excludes)?;
    let header = from_squashfs_with(&squashfs, out, &opts.create, arch, &opts.metadata, &labels)?;
    let squashfs_size = fs::metadata(&squashfs)
        .map_err(|e| SifError::io(&squashfs, "read the squashfs size", e))?
        .len();
    Ok(BuildReport {
        header,
        arch,
        squashfs_size,
    })
}

/// Builds the SIF `out` around an existing squashfs; `metadata` goes only into the SIF
/// objects (the squashfs is used as it is).
pub fn from_squashfs(
    squashfs: &Path,
    out: &Path,
    create: &CreateOptions,
    arch: Arch,
    metadata: &Metadata,
) -> Result<Header> {
    from_squashfs_with(squashfs, out, create, arch, metadata, &metadata.labels)
}

fn from_squashfs_with(
    squashfs: &Path,
    out: &Path,
    create: &CreateOptions,
    arch: Arch,
    metadata: &Metadata,
    labels: &BTreeMap<String, String>,
) -> Result<Header> {
    let mut file = File::open(squashfs).map_err(|e| SifError::io(squashfs, "open", e))?;
    let mut head = [0u8; SUPERBLOCK_LEN];
    file.read_exact(&mut head)
        .map_err(|e| SifError::io(squashfs, "read the squashfs superblock", e))?;
    let sb = Superblock::parse(&head);
    let size = file
        .metadata()
        .map_err(|e| SifError::io(squashfs, "read the squashfs size", e))?
        .len();
    sb.check(0, size).map_err(|problem| {
        SifError::input(squashfs, problem.to_string().replace("(object 0) ", ""))
    })?;
    file = File::open(squashfs).map_err(|e| SifError::io(squashfs, "open", e))?;
    let inspect = inspect_metadata(metadata, labels);
    let objects = vec![
        ObjectInput::bytes(
            DataType::Deffile,
            metadata.definition.clone().unwrap_or_default(),
        ),
        ObjectInput::bytes(DataType::GenericJson, inspect).with_name(INSPECT_METADATA_JSON),
        ObjectInput::partition(file, FsType::Squashfs, PartType::PrimarySystem, arch),
    ];
    // Write next to `out`, then rename: a reader never sees half an image.
    let tmp = sibling_tmp(out);
    let header = write::create(&tmp, create, objects)?;
    fs::rename(&tmp, out).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        SifError::io(out, "move the new image into place", e)
    })?;
    Ok(header)
}

fn sibling_tmp(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image.sif".into());
    out.with_file_name(format!(".{name}.berth-{}.tmp", std::process::id()))
}

/// The labels of a build: the rootfs's existing labels, then the build's own, then
/// the caller's (which win).
fn build_labels(
    rootfs: &Path,
    metadata: &Metadata,
    arch: Arch,
    time: i64,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = fs::read(rootfs.join(layout::LABELS_JSON))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let build_labels = [
        ("org.label-schema.schema-version", "1.0".to_string()),
        ("org.label-schema.build-arch", arch.name().to_string()),
        (
            "org.opencontainers.image.architecture",
            arch.name().to_string(),
        ),
        (
            "org.opencontainers.image.created",
            gotime::format_rfc3339(time),
        ),
        (
            "org.label-schema.usage.berth.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    for (key, value) in build_labels {
        labels.insert(key.to_string(), value);
    }
    labels.extend(metadata.labels.clone());
    labels
}

/// JSON as Go's `json.MarshalIndent(v, "", "\t")` writes it.
fn to_json_tab_indented<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing maps of strings into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

/// Apptainer's `inspect.Metadata`, with the fields berth fills.
#[derive(Serialize)]
struct Inspect<'a> {
    data: InspectData<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct InspectData<'a> {
    attributes: InspectAttributes<'a>,
}

#[derive(Serialize)]
struct InspectAttributes<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runscript: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deffile: Option<String>,
}

fn inspect_metadata(metadata: &Metadata, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let mut environment = BTreeMap::new();
    if let Some(env) = &metadata.environment {
        environment.insert("90-environment.sh", layout::environment_script(None, env));
    }
    let value = Inspect {
        data: InspectData {
            attributes: InspectAttributes {
                environment,
                labels,
                runscript: metadata.runscript.as_deref().map(layout::runscript),
                deffile: metadata
                    .definition
                    .as_ref()
                    .map(|d| String::from_utf8_lossy(d).into_owned()),
            },
        },
        kind: "container",
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// What to add to a rootfs's squashfs.
#[derive(Debug, Default)]
struct LayoutPlan {
    /// Entries to add: (path, mode, what), parents first.
    entries: Vec<(String, u32, PlannedKind)>,
    /// Staged file contents: (staging name, text).
    staged: Vec<(String, String)>,
    /// Source paths that planned files replace.
    excludes: Vec<String>,
}

#[derive(Debug)]
enum PlannedKind {
    Dir,
    /// Contents staged under this name.
    File(String),
    Symlink(String),
}

impl LayoutPlan {
    fn add_file(&mut self, path: &str, mode: u32, text: String) {
        let name = format!("file{}", self.staged.len());
        self.staged.push((name.clone(), text));
        self.entries
            .push((path.to_string(), mode, PlannedKind::File(name)));
    }

    /// The mksquashfs pseudo definitions (`-pf` file) for the entries.
    fn pseudo_definitions(&self, staging: &Staging) -> String {
        let mut out = String::new();
        for (path, mode, kind) in &self.entries {
            let line = match kind {
                PlannedKind::Dir => format!("/{path} d {mode:o} 0 0\n"),
                PlannedKind::File(name) => format!(
                    "/{path} f {mode:o} 0 0 cat {}\n",
                    shell_quote(&staging.path.join(name).to_string_lossy())
                ),
                PlannedKind::Symlink(target) => format!("/{path} s {mode:o} 0 0 {target}\n"),
            };
            out.push_str(&line);
        }
        out
    }
}

/// Plans the `/.singularity.d` layout for `rootfs`: base entries the rootfs lacks,
/// and berth's own files (replacing the rootfs's copies).
fn plan_layout(
    rootfs: &Path,
    metadata: &Metadata,
    labels: &BTreeMap<String, String>,
) -> Result<LayoutPlan> {
    let mut plan = LayoutPlan::default();
    let mut replaced: BTreeMap<&str, (u32, String)> = BTreeMap::new();
    replaced.insert(layout::LABELS_JSON, (0o644, to_json_tab_indented(labels)));
    if let Some(def) = &metadata.definition {
        replaced.insert(
            layout::DEFINITION,
            (0o644, String::from_utf8_lossy(def).into_owned()),
        );
    }
    if let Some(env) = &metadata.environment {
        let existing = fs::read_to_string(rootfs.join(layout::ENVIRONMENT)).ok();
        replaced.insert(
            layout::ENVIRONMENT,
            (0o755, layout::environment_script(existing.as_deref(), env)),
        );
    }
    if let Some(body) = &metadata.runscript {
        replaced.insert(layout::RUNSCRIPT_PATH, (0o755, layout::runscript(body)));
    }
    for entry in layout::base() {
        if replaced.contains_key(entry.path) || exists_or_blocked(rootfs, entry.path) {
            continue;
        }
        match entry.kind {
            Kind::Dir => plan
                .entries
                .push((entry.path.to_string(), entry.mode, PlannedKind::Dir)),
            Kind::File(text) => plan.add_file(entry.path, entry.mode, text),
            Kind::Symlink(target) => plan.entries.push((
                entry.path.to_string(),
                entry.mode,
                PlannedKind::Symlink(target.to_string()),
            )),
        }
    }
    for (path, (mode, text)) in replaced {
        match fs::symlink_metadata(rootfs.join(path)) {
            Ok(meta) if meta.is_dir() => {
                return Err(SifError::input(
                    rootfs.join(path),
                    "is a directory; berth writes a file there",
                ))
            }
            Ok(_) => plan.excludes.push(path.to_string()),
            Err(_) if blocked(rootfs, path) => {
                return Err(SifError::input(
                    rootfs.join(path),
                    "cannot be written: a parent is not a directory",
                ))
            }
            Err(_) => {}
        }
        plan.add_file(path, mode, text);
    }
    Ok(plan)
}

/// Whether `path` exists in `rootfs` (as anything), or cannot be added because one of
/// its parents exists but is not a directory.
fn exists_or_blocked(rootfs: &Path, path: &str) -> bool {
    fs::symlink_metadata(rootfs.join(path)).is_ok() || blocked(rootfs, path)
}

fn blocked(rootfs: &Path, path: &str) -> bool {
    Path::new(path).ancestors().skip(1).any(|parent| {
        !parent.as_os_str().is_empty()
            && fs::symlink_metadata(rootfs.join(parent)).is_ok_and(|m| !m.is_dir())
    })
}

/// `s` quoted for `/bin/sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The architecture of the rootfs, as Apptainer finds it: that of `/bin/sh` (symlinks
/// followed inside the rootfs), else of the first ELF executable in a lexical walk.
pub fn arch_from_rootfs(rootfs: &Path) -> Option<Arch> {
    if let Some(sh) = resolve_in_root(rootfs, "bin/sh") {
        if let Some(arch) = elf_arch(&sh) {
            return Some(arch);
        }
    }
    let mut budget = 100_000usize;
    first_elf_arch(rootfs, &mut budget)
}

/// The file `path` names inside `root`, following symlinks as if `root` were `/`.
fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = path.split('/').rev().map(String::from).collect();
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let candidate = current.join(&part);
        let meta = fs::symlink_metadata(root.join(&candidate)).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(root.join(&candidate)).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                current = PathBuf::new();
            }
            pending.extend(target.split('/').rev().map(String::from));
        } else {
            current = candidate;
        }
    }
    Some(root.join(current))
}

fn elf_arch(path: &Path) -> Option<Arch> {
    let mut head = [0u8; 20];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    Arch::from_elf(&head)
}

fn first_elf_arch(dir: &Path, budget: &mut usize) -> Option<Arch> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            if let Some(arch) = first_elf_arch(&entry.path(), budget) {
                return Some(arch);
            }
        } else if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            let mut head = [0u8; 20];
            let read = File::open(entry.path()).and_then(|mut f| f.read_exact(&mut head));
            if read.is_ok() && head.starts_with(b"\x7fELF") {
                return Arch::from_elf(&head);
            }
        }
    }
    None
}

/// A private temporary directory, removed when dropped.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new() -> Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last_err = None;
        for attempt in 0..100u32 {
            let path = base.join(format!(
                "berth-sif-build.{}.{nanos}.{attempt}",
                std::process::id()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Staging { path }),
                Err(e) => last_err = Some(e),
            }
        }
        Err(SifError::io(
            base,
            "create a staging directory",
            last_err.unwrap_or_else(|| std::io::Error::other("no attempt made")),
        ))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(name);
        fs::write(&path, bytes).map_err(|e| SifError::io(&path, "write a staging file", e))?;
        Ok(path)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn finds_the_arch_of_bin_sh_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::write(
            dir.path().join("usr/bin/dash"),
            Arch::Arm64.elf_magic().unwrap(),
        )
        .unwrap();
        symlink("/usr/bin/dash", dir.path().join("bin/sh")).unwrap();
        assert_eq!(arch_from_rootfs(dir.path()), Some(Arch::Arm64));
    }

    #[test]
    fn falls_back_to_the_first_executable_elf() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("opt")).unwrap();
        let exe = dir.path().join("opt/tool");
        fs::write(&exe, Arch::Riscv64.elf_magic().unwrap()).unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(arch_from_rootfs(dir.path()), Some(Arch::Riscv64));
        assert_eq!(arch_from_rootfs(&dir.path().join("missing")), None);
    }

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        symlink("../../../../etc/passwd", dir.path().join("bin/sh")).unwrap();
        let resolved = resolve_in_root(dir.path(), "bin/sh");
        assert_eq!(resolved, None, "etc/passwd does not exist inside the root");
    }

    #[test]
    fn plan_keeps_existing_files_and_replaces_berths_own() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".singularity.d/env")).unwrap();
        fs::write(dir.path().join(".singularity.d/env/01-base.sh"), "mine").unwrap();
        fs::write(
            dir.path().join(".singularity.d/labels.json"),
            "{\"a\":\"b\"}",
        )
        .unwrap();
        let metadata = Metadata {
            environment: Some("export A=1".into()),
            ..Metadata::default()
        };
        let labels = build_labels(dir.path(), &metadata, Arch::Amd64, 0);
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        let plan = plan_layout(dir.path(), &metadata, &labels).unwrap();
        let paths: Vec<&str> = plan.entries.iter().map(|(p, _, _)| p.as_str()).collect();
        assert!(!paths.contains(&".singularity.d"));
        assert!(!paths.contains(&".singularity.d/env/01-base.sh"));
        assert!(paths.contains(&".singularity.d/actions/exec"));
        assert!(paths.contains(&".singularity.d/env/90-environment.sh"));
        assert_eq!(plan.excludes, vec![layout::LABELS_JSON.to_string()]);
        let env_text = &plan
            .staged
            .iter()
            .find(|(_, t)| t.contains("export A=1"))
            .unwrap()
            .1;
        assert_eq!(env_text, "#!/bin/sh\n\nexport A=1\n");
    }

    #[test]
    fn labels_json_is_tab_indented_like_go() {
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), "1".to_string());
        labels.insert("b".to_string(), "2".to_string());
        assert_eq!(
            to_json_tab_indented(&labels),
            "{\n\t\"a\": \"1\",\n\t\"b\": \"2\"\n}"
        );
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("/tmp/a b'c"), r"'/tmp/a b'\''c'");
    }
}
