//! cgroup v1 and v2 behind one interface, for the cpuset and cpu controllers.
//!
//! Every path is taken relative to a [`Mounts`] value, so unit tests run on
//! directory trees in a temp dir. berth never opens the memory hierarchy.
//!
//! Why not the `cgroups-rs` crate: its v1 hierarchy is found only from
//! /proc/self/mountinfo and its v2 root is hard-coded to /sys/fs/cgroup (here
//! v2 is /sys/fs/cgroup/unified), so it cannot run on a test tree; creating or
//! loading a `Cgroup` acts on every mounted controller, memory included, which
//! berth must never touch; and what berth needs (read cpus/mems and their
//! effective values, write them, move a process, one weight file) is a handful
//! of file operations.

pub mod cgconfig;
pub mod cgred;
pub mod rules;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cpuset::CpuSet;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("cannot write '{value}' to {path}: {error}")]
    Write {
        path: PathBuf,
        value: String,
        error: io::Error,
    },
    #[error("cannot create cgroup {path}: {error}")]
    Create { path: PathBuf, error: io::Error },
    #[error("cannot remove cgroup {path}: {error}")]
    Remove { path: PathBuf, error: io::Error },
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: crate::cpuset::ParseError,
    },
    #[error("no {0} hierarchy is mounted")]
    NotMounted(&'static str),
    #[error("refused cgroup path {0:?}: not a plain absolute path inside its hierarchy")]
    BadPath(String),
}

/// Whether `path` is absolute and made only of plain components (no '.',
/// '..', empty components or NUL), so joining it stays inside its mount.
pub fn is_normal_group_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && (path == "/"
            || path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

/// Whether `name` is one interface file name (no '/', not '.' or '..').
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Which hierarchy a group lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hierarchy {
    /// cgroup v1, cpuset controller
    CpusetV1,
    /// cgroup v1, cpu controller
    CpuV1,
    /// cgroup v2 (cpuset and cpu in one tree)
    Unified,
}

/// A cgroup: its hierarchy and its path from the hierarchy's root (`/`,
/// `/users`), as /proc/PID/cgroup shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub hierarchy: Hierarchy,
    pub path: String,
}

impl Group {
    pub fn new(hierarchy: Hierarchy, path: &str) -> Group {
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() {
            "/".to_string()
        } else if trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            format!("/{trimmed}")
        };
        Group { hierarchy, path }
    }

    pub fn is_root(&self) -> bool {
        self.path == "/"
    }

    pub fn parent(&self) -> Option<Group> {
        if self.is_root() {
            return None;
        }
        let parent = match self.path.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &self.path[..i],
        };
        Some(Group::new(self.hierarchy, parent))
    }

    /// This group and its ancestors, root first.
    pub fn lineage(&self) -> Vec<Group> {
        let mut chain = vec![self.clone()];
        while let Some(p) = chain.last().and_then(Group::parent) {
            chain.push(p);
        }
        chain.reverse();
        chain
    }

    /// The same path in another hierarchy (e.g. the cpu group of a cpuset).
    pub fn in_hierarchy(&self, hierarchy: Hierarchy) -> Group {
        Group::new(hierarchy, &self.path)
    }

    pub fn child(&self, name: &str) -> Group {
        Group::new(
            self.hierarchy,
            &format!("{}/{name}", self.path.trim_end_matches('/')),
        )
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = match self.hierarchy {
            Hierarchy::CpusetV1 => "cpuset",
            Hierarchy::CpuV1 => "cpu",
            Hierarchy::Unified => "unified",
        };
        write!(f, "{h}:{}", self.path)
    }
}

/// Where the hierarchies are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mounts {
    pub cpuset_v1: Option<PathBuf>,
    pub cpu_v1: Option<PathBuf>,
    pub unified: Option<PathBuf>,
}

impl Mounts {
    /// Reads /proc/self/mountinfo.
    pub fn of_this_system() -> Mounts {
        fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Mounts::from_mountinfo(&t))
            .unwrap_or_default()
    }

    /// The usual cgroup v1 layout, found without reading mountinfo (which costs
    /// 0.15-0.3 ms per step with a few dozen mounts): `/sys/fs/cgroup/cpuset`
    /// and `/sys/fs/cgroup/cpu` each the root of its hierarchy (only a v1 root
    /// has `release_agent`). `unified` is left out: with both v1 controllers
    /// present it is never used. None for any other layout.
    pub fn usual_v1() -> Option<Mounts> {
        let base = Path::new("/sys/fs/cgroup");
        let root_of = |dir: &str, file: &str| {
            let d = base.join(dir);
            (d.join("release_agent").exists() && d.join(file).exists()).then_some(d)
        };
        Some(Mounts {
            cpuset_v1: Some(root_of("cpuset", "cpuset.cpus")?),
            cpu_v1: Some(root_of("cpu", "cpu.shares")?),
            unified: None,
        })
    }

    /// The first mount of each hierarchy whose root is the hierarchy's root.
    pub fn from_mountinfo(text: &str) -> Mounts {
        let mut mounts = Mounts::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(root), Some(point), Some(fstype), Some(opts)) = (
                fields.get(3),
                fields.get(4),
                fields.get(sep + 1),
                fields.get(sep + 3),
            ) else {
                continue;
            };
            if *root != "/" {
                continue;
            }
            let point = PathBuf::from(unescape_mount(point));
            let has = |c: &str| opts.split(',').any(|o| o == c);
            match *fstype {
                "cgroup2" if mounts.unified.is_none() => mounts.unified = Some(point),
                "cgroup" if has("cpuset") && mounts.cpuset_v1.is_none() => {
                    mounts.cpuset_v1 = Some(point)
                }
                "cgroup" if has("cpu") && mounts.cpu_v1.is_none() => mounts.cpu_v1 = Some(point),
                _ => {}
            }
        }
        mounts
    }

    fn root(&self, h: Hierarchy) -> Result<&Path, CgroupError> {
        match h {
            Hierarchy::CpusetV1 => self
                .cpuset_v1
                .as_deref()
                .ok_or(CgroupError::NotMounted("cpuset")),
            Hierarchy::CpuV1 => self.cpu_v1.as_deref().ok_or(CgroupError::NotMounted("cpu")),
            Hierarchy::Unified => self
                .unified
                .as_deref()
                .ok_or(CgroupError::NotMounted("cgroup2")),
        }
    }

    /// The group's directory.
    pub fn dir(&self, group: &Group) -> Result<PathBuf, CgroupError> {
        if !is_normal_group_path(&group.path) {
            return Err(CgroupError::BadPath(group.path.escape_debug().to_string()));
        }
        Ok(self
            .root(group.hierarchy)?
            .join(group.path.trim_start_matches('/')))
    }

    /// Whether the cpuset controller is usable on v2 (enabled below the root).
    pub fn v2_has_cpuset(&self) -> bool {
        self.unified.as_ref().is_some_and(|u| {
            fs::read_to_string(u.join("cgroup.subtree_control"))
                .is_ok_and(|c| c.split_whitespace().any(|w| w == "cpuset"))
        })
    }
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// The groups a process is in, from /proc/PID/cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Membership {
    pub cpuset_v1: Option<String>,
    pub cpu_v1: Option<String>,
    pub unified: Option<String>,
}

impl Membership {
    pub fn parse(text: &str) -> Membership {
        let mut m = Membership::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                m.unified = Some(path.to_string());
                continue;
            }
            for c in controllers.split(',') {
                match c {
                    "cpuset" => m.cpuset_v1 = Some(path.to_string()),
                    "cpu" => m.cpu_v1 = Some(path.to_string()),
                    _ => {}
                }
            }
        }
        m
    }

    pub fn of_pid(pid: i32) -> Result<Membership, CgroupError> {
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        fs::read_to_string(&path)
            .map(|t| Membership::parse(&t))
            .map_err(|error| CgroupError::Read { path, error })
    }

    /// The group that holds the process's cpuset: v1 when the cpuset
    /// controller is mounted there, else v2 when v2 has it.
    pub fn cpuset_group(&self, mounts: &Mounts) -> Option<Group> {
        if mounts.cpuset_v1.is_some() {
            return self
                .cpuset_v1
                .as_deref()
                .map(|p| Group::new(Hierarchy::CpusetV1, p));
        }
        if mounts.v2_has_cpuset() {
            return self
                .unified
                .as_deref()
                .map(|p| Group::new(Hierarchy::Unified, p));
        }
        None
    }

    /// The group that holds the process's cpu weight.
    pub fn cpu_group(&self, mounts: &Mounts) -> Option<Group> {
        if mounts.cpu_v1.is_some() {
            return self
                .cpu_v1
                .as_deref()
                .map(|p| Group::new(Hierarchy::CpuV1, p));
        }
        self.unified
            .as_deref()
            .map(|p| Group::new(Hierarchy::Unified, p))
    }
}

/// The cpuset files of one group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpusetState {
    /// As configured (`cpuset.cpus`); empty on v2 means "the parent's".
    pub cpus: CpuSet,
    pub mems: CpuSet,
    /// What the group's processes may use after its ancestors' limits.
    pub effective_cpus: CpuSet,
    pub effective_mems: CpuSet,
}

/// The kernel's file names, per hierarchy.
struct Files {
    cpus: &'static str,
    mems: &'static str,
    effective_cpus: &'static str,
    effective_mems: &'static str,
}

const V1_FILES: Files = Files {
    cpus: "cpuset.cpus",
    mems: "cpuset.mems",
    effective_cpus: "cpuset.effective_cpus",
    effective_mems: "cpuset.effective_mems",
};
const V2_FILES: Files = Files {
    cpus: "cpuset.cpus",
    mems: "cpuset.mems",
    effective_cpus: "cpuset.cpus.effective",
    effective_mems: "cpuset.mems.effective",
};

/// cgroup v1 `cpu.shares` default; v2 `cpu.weight` default.
pub const V1_DEFAULT_SHARES: u64 = 1024;
pub const V2_DEFAULT_WEIGHT: u64 = 100;

/// File access to the hierarchies under [`Mounts`].
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub mounts: Mounts,
}

impl Cgroups {
    pub fn new(mounts: Mounts) -> Cgroups {
        Cgroups { mounts }
    }

    fn file(&self, group: &Group, name: &str) -> Result<PathBuf, CgroupError> {
        if !is_plain_file_name(name) {
            return Err(CgroupError::BadPath(name.escape_debug().to_string()));
        }
        Ok(self.mounts.dir(group)?.join(name))
    }

    pub fn read(&self, group: &Group, name: &str) -> Result<String, CgroupError> {
        let path = self.file(group, name)?;
        fs::read_to_string(&path).map_err(|error| CgroupError::Read { path, error })
    }

    pub fn write(&self, group: &Group, name: &str, value: &str) -> Result<(), CgroupError> {
        let path = self.file(group, name)?;
        fs::write(&path, value).map_err(|error| CgroupError::Write {
            path,
            value: value.to_string(),
            error,
        })
    }

    fn read_set(&self, group: &Group, name: &str) -> Result<CpuSet, CgroupError> {
        let text = self.read(group, name)?;
        CpuSet::parse(&text).map_err(|error| CgroupError::Parse {
            path: self.mounts.dir(group).unwrap_or_default().join(name),
            error,
        })
    }

    fn files(group: &Group) -> &'static Files {
        match group.hierarchy {
            Hierarchy::Unified => &V2_FILES,
            _ => &V1_FILES,
        }
    }

    pub fn exists(&self, group: &Group) -> bool {
        self.mounts.dir(group).is_ok_and(|d| d.is_dir())
    }

    /// Whether a group exists and holds no process.
    pub fn is_vacant(&self, group: &Group) -> bool {
        self.exists(group) && self.processes(group).is_ok_and(|p| p.is_empty())
    }

    /// A group's cpuset. On v2 a group without the cpuset controller shows
    /// its nearest ancestor's effective sets.
    pub fn cpuset(&self, group: &Group) -> Result<CpusetState, CgroupError> {
        let f = Cgroups::files(group);
        if group.hierarchy == Hierarchy::Unified && !self.file(group, f.effective_cpus)?.exists() {
            if let Some(parent) = group.parent() {
                let mut state = self.cpuset(&parent)?;
                state.cpus = CpuSet::new();
                state.mems = CpuSet::new();
                return Ok(state);
            }
        }
        Ok(CpusetState {
            cpus: self.read_set(group, f.cpus)?,
            mems: self.read_set(group, f.mems)?,
            effective_cpus: self.read_set(group, f.effective_cpus)?,
            effective_mems: self.read_set(group, f.effective_mems)?,
        })
    }

    pub fn set_cpus(&self, group: &Group, cpus: &CpuSet) -> Result<(), CgroupError> {
        self.write(group, Cgroups::files(group).cpus, &cpus.to_string())
    }

    pub fn set_mems(&self, group: &Group, mems: &CpuSet) -> Result<(), CgroupError> {
        self.write(group, Cgroups::files(group).mems, &mems.to_string())
    }

    /// Moves a process (all its threads) into the group.
    pub fn move_process(&self, group: &Group, pid: i32) -> Result<(), CgroupError> {
        self.write(group, "cgroup.procs", &pid.to_string())
    }

    /// The cpu weight file of the hierarchy and its default value.
    pub fn weight_file(group: &Group) -> (&'static str, u64) {
        match group.hierarchy {
            Hierarchy::Unified => ("cpu.weight", V2_DEFAULT_WEIGHT),
            _ => ("cpu.shares", V1_DEFAULT_SHARES),
        }
    }

    pub fn weight(&self, group: &Group) -> Result<u64, CgroupError> {
        let (name, _) = Cgroups::weight_file(group);
        let text = self.read(group, name)?;
        text.trim().parse().map_err(|_| CgroupError::Read {
            path: self.file(group, name).unwrap_or_default(),
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("'{}' is not a number", text.trim()),
            ),
        })
    }

    pub fn set_weight(&self, group: &Group, weight: u64) -> Result<(), CgroupError> {
        let (name, _) = Cgroups::weight_file(group);
        self.write(group, name, &weight.to_string())
    }

    /// Makes the group's directory 0755 whatever the job's umask (slurmstepd runs
    /// with it): a group users could write would let them make child groups of
    /// their own, with cpusets of their choosing.
    pub fn create(&self, group: &Group) -> Result<(), CgroupError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let path = self.mounts.dir(group)?;
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
            .map_err(|error| CgroupError::Create { path, error })
    }

    pub fn remove(&self, group: &Group) -> Result<(), CgroupError> {
        let path = self.mounts.dir(group)?;
        fs::remove_dir(&path).map_err(|error| CgroupError::Remove { path, error })
    }

    /// The pids in a group (cgroup.procs).
    pub fn processes(&self, group: &Group) -> Result<Vec<i32>, CgroupError> {
        Ok(self
            .read(group, "cgroup.procs")?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }
}

/// Test helpers: a fake v1/v2 tree in a temp dir with the kernel's files.
#[cfg(test)]
pub(crate) mod testfs {
    use super::*;

    pub fn v1_mounts(root: &Path) -> Mounts {
        Mounts {
            cpuset_v1: Some(root.join("cpuset")),
            cpu_v1: Some(root.join("cpu")),
            unified: None,
        }
    }

    /// Creates a v1 cpuset group with the given cpus/mems (effective = given).
    pub fn v1_cpuset(m: &Mounts, path: &str, cpus: &str, mems: &str) {
        let dir = m.dir(&Group::new(Hierarchy::CpusetV1, path)).unwrap();
        fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("cpuset.cpus", cpus),
            ("cpuset.mems", mems),
            ("cpuset.effective_cpus", cpus),
            ("cpuset.effective_mems", mems),
            ("cgroup.procs", ""),
        ] {
            fs::write(dir.join(f), format!("{v}\n")).unwrap();
        }
    }

    pub fn v1_cpu(m: &Mounts, path: &str, shares: u64) {
        let dir = m.dir(&Group::new(Hierarchy::CpuV1, path)).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.shares"), format!("{shares}\n")).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
    }

    pub fn v2_group(m: &Mounts, path: &str, cpus: Option<(&str, &str)>, effective: (&str, &str)) {
        let dir = m.dir(&Group::new(Hierarchy::Unified, path)).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        fs::write(dir.join("cpu.weight"), "100\n").unwrap();
        if let Some((c, mm)) = cpus {
            fs::write(dir.join("cpuset.cpus"), format!("{c}\n")).unwrap();
            fs::write(dir.join("cpuset.mems"), format!("{mm}\n")).unwrap();
            fs::write(
                dir.join("cpuset.cpus.effective"),
                format!("{}\n", effective.0),
            )
            .unwrap();
            fs::write(
                dir.join("cpuset.mems.effective"),
                format!("{}\n", effective.1),
            )
            .unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testfs::*;
    use super::*;

    #[test]
    fn un_normalised_paths_and_names_are_refused() {
        for bad in ["/../../root", "/a/../b", "/a//b", "/./a", "a", "/a/.."] {
            assert!(!is_normal_group_path(bad), "{bad}");
        }
        for good in ["/", "/slurm_n1/uid_0", "/a.b/c..d"] {
            assert!(is_normal_group_path(good), "{good}");
        }
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroups::new(testfs::v1_mounts(&dir.path().join("cg")));
        let g = Group {
            hierarchy: Hierarchy::CpuV1,
            path: "/../../../../root".into(),
        };
        assert!(matches!(
            cg.write(&g, "x", "1"),
            Err(CgroupError::BadPath(_))
        ));
        let ok = Group::new(Hierarchy::CpuV1, "/");
        assert!(matches!(
            cg.write(&ok, "../../x", "1"),
            Err(CgroupError::BadPath(_))
        ));
    }

    #[test]
    fn the_usual_v1_layout_agrees_with_mountinfo() {
        let Some(fast) = Mounts::usual_v1() else {
            return; // not the usual layout on this machine
        };
        let full = Mounts::of_this_system();
        let canon = |p: &Option<PathBuf>| p.as_ref().and_then(|p| p.canonicalize().ok());
        assert_eq!(canon(&fast.cpuset_v1), canon(&full.cpuset_v1));
        assert_eq!(canon(&fast.cpu_v1), canon(&full.cpu_v1));
    }

    #[test]
    fn mountinfo_gives_the_first_root_mount_of_each_hierarchy() {
        let text = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
48 47 0:31 / /chroot/sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
60 47 0:31 /sub /other rw,relatime - cgroup cgroup rw,cpuacct,cpu
";
        let m = Mounts::from_mountinfo(text);
        assert_eq!(
            m.cpuset_v1.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpuset"))
        );
        assert_eq!(m.cpu_v1.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(
            m.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        let co = Mounts::from_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(
            co.cpu_v1.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(co.cpuset_v1, None);
    }

    #[test]
    fn proc_cgroup_gives_cpuset_cpu_and_unified_paths() {
        let m = Membership::parse(
            "9:name=systemd:/\n3:cpuset:/users\n2:cpu,cpuacct:/x\n0::/system.slice/a.service\n",
        );
        assert_eq!(m.cpuset_v1.as_deref(), Some("/users"));
        assert_eq!(m.cpu_v1.as_deref(), Some("/x"));
        assert_eq!(m.unified.as_deref(), Some("/system.slice/a.service"));
    }

    #[test]
    fn groups_know_their_parents() {
        let g = Group::new(Hierarchy::CpusetV1, "a/b/");
        assert_eq!(g.path, "/a/b");
        assert_eq!(g.parent().unwrap().path, "/a");
        assert_eq!(g.parent().unwrap().parent().unwrap().path, "/");
        assert!(Group::new(Hierarchy::CpusetV1, "/").parent().is_none());
        let names: Vec<String> = g.lineage().iter().map(|g| g.path.clone()).collect();
        assert_eq!(names, ["/", "/a", "/a/b"]);
        assert_eq!(g.child("c").path, "/a/b/c");
        assert_eq!(Group::new(Hierarchy::CpuV1, "/").child("c").path, "/c");
        assert_eq!(g.to_string(), "cpuset:/a/b");
    }

    #[test]
    fn reads_and_writes_v1_cpusets_and_shares() {
        let dir = tempfile::tempdir().unwrap();
        let m = v1_mounts(dir.path());
        v1_cpuset(&m, "/", "0-3", "0");
        v1_cpuset(&m, "/ext", "1", "0");
        v1_cpu(&m, "/ext", 512);
        let cg = Cgroups::new(m);
        let ext = Group::new(Hierarchy::CpusetV1, "/ext");
        let state = cg.cpuset(&ext).unwrap();
        assert_eq!(state.cpus.to_string(), "1");
        assert_eq!(state.effective_mems.to_string(), "0");
        cg.set_cpus(&ext, &CpuSet::parse("1-2").unwrap()).unwrap();
        assert_eq!(cg.read(&ext, "cpuset.cpus").unwrap(), "1-2");
        assert_eq!(cg.weight(&ext.in_hierarchy(Hierarchy::CpuV1)).unwrap(), 512);
        cg.move_process(&ext, 42).unwrap();
        assert_eq!(cg.processes(&ext).unwrap(), vec![42]);
    }

    #[test]
    fn v2_groups_without_cpuset_show_their_ancestors_effective_sets() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mounts {
            unified: Some(dir.path().to_path_buf()),
            ..Mounts::default()
        };
        v2_group(&m, "/", Some(("", "")), ("0-7", "0-1"));
        v2_group(&m, "/slice", Some(("2-3", "")), ("2-3", "0-1"));
        v2_group(&m, "/slice/svc", None, ("", ""));
        let cg = Cgroups::new(m);
        let state = cg
            .cpuset(&Group::new(Hierarchy::Unified, "/slice/svc"))
            .unwrap();
        assert_eq!(state.effective_cpus.to_string(), "2-3");
        assert_eq!(state.effective_mems.to_string(), "0-1");
        assert!(state.cpus.is_empty());
    }
}
