//! Changes several slurmstepd processes share: a widened cpuset, a cpu group
//! berth created, a weight berth set. Each is recorded under a lock in
//! `<run_dir>/reconcile/state.json` with its original value and the steps
//! (pid + start time) holding it; the last step to let go restores it. A
//! holder that died without letting go (slurmstepd killed) is dropped the
//! next time any step takes the lock.

use std::path::{Path, PathBuf};

use crate::cgroup::{is_normal_group_path, CgroupError, Cgroups, Group};
use crate::run_dir::{Dir, RunDirError};

use super::process;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A cgroup file berth changed (`cpuset.cpus`, `cpuset.mems`, `cpu.shares`).
    File { group: Group, file: String },
    /// A group berth created.
    Created { group: Group },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: i32,
    pub start: u64,
}

impl Holder {
    pub fn this_process() -> Option<Holder> {
        let pid = std::process::id() as i32;
        process::start_time(pid).map(|start| Holder { pid, start })
    }

    fn alive(&self) -> bool {
        process::is_alive(self.pid, self.start)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub resource: Resource,
    /// The file's value before berth changed it.
    pub original: Option<String>,
    pub holders: Vec<Holder>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// In the order taken: restored in reverse (children before parents).
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// state.json larger than this is refused (a few hundred entries fit).
const STATE_LIMIT: u64 = 1 << 20;

/// The interface files berth changes and may restore.
const RESTORABLE_FILES: &[&str] = &[
    "cpu.shares",
    "cpu.weight",
    "cpuset.cpus",
    "cpuset.mems",
    "cgroup.procs",
    "tasks",
];

pub struct Registry {
    run_dir: PathBuf,
}

impl Registry {
    pub fn new(run_dir: &Path) -> Registry {
        Registry {
            run_dir: run_dir.to_path_buf(),
        }
    }

    fn dir(&self) -> Result<Dir, RegistryError> {
        Ok(Dir::open(&self.run_dir)?.subdir("reconcile")?)
    }

    /// Reads state.json as untrusted: owner and mode checked, size bounded,
    /// and every implausible entry dropped with a log line.
    fn load(dir: &Dir) -> State {
        let bytes = match dir.read_file("state.json", STATE_LIMIT) {
            Ok(Some(b)) => b,
            Ok(None) => return State::default(),
            Err(e) => {
                log::warn!("ignoring reconcile state: {e}");
                return State::default();
            }
        };
        match serde_json::from_slice::<State>(&bytes) {
            Ok(state) => plausible(state),
            Err(e) => {
                log::warn!("ignoring reconcile state {}: {e}", dir.path().display());
                State::default()
            }
        }
    }

    fn save(dir: &Dir, state: &State) -> Result<(), RegistryError> {
        let text = serde_json::to_string_pretty(state).unwrap_or_default();
        Ok(dir.write_atomically("state.json", text.as_bytes())?)
    }

    /// Runs `f` on the shared state under the lock, after restoring what
    /// only dead steps still held, and saves the result.
    pub fn with<T>(
        &self,
        cg: &Cgroups,
        f: impl FnOnce(&mut State) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let dir = self.dir()?;
        let _lock = dir.lock("lock")?;
        let mut state = Registry::load(&dir);
        for e in &mut state.entries {
            e.holders.retain(Holder::alive);
        }
        restore_unheld(cg, &mut state);
        let out = f(&mut state);
        Registry::save(&dir, &state)?;
        out
    }

    /// The recorded state, read without the lock (for planning, `berth doctor`, tests).
    pub fn snapshot(&self) -> State {
        match self.dir() {
            Ok(dir) => Registry::load(&dir),
            Err(e) => {
                log::warn!("cannot read reconcile state: {e}");
                State::default()
            }
        }
    }
}

impl State {
    fn find(&mut self, r: &Resource) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| &e.resource == r)
    }

    /// Sets a cgroup file shared by steps. The first holder records the
    /// original; `value` gets the file's current value and returns the new one.
    pub fn set_file(
        &mut self,
        cg: &Cgroups,
        holder: Holder,
        group: &Group,
        file: &str,
        value: impl FnOnce(&str) -> String,
    ) -> Result<(), RegistryError> {
        let resource = Resource::File {
            group: group.clone(),
            file: file.to_string(),
        };
        let current = cg.read(group, file)?.trim().to_string();
        let new = value(&current);
        if new != current {
            cg.write(group, file, &new)?;
        }
        match self.find(&resource) {
            Some(e) if !e.holders.contains(&holder) => e.holders.push(holder),
            Some(_) => {}
            None if new != current => self.entries.push(Entry {
                resource,
                original: Some(current),
                holders: vec![holder],
            }),
            None => {}
        }
        Ok(())
    }

    /// Creates a group shared by steps (an existing group not made by berth
    /// is used as it is and never removed).
    pub fn create_group(
        &mut self,
        cg: &Cgroups,
        holder: Holder,
        group: &Group,
    ) -> Result<(), RegistryError> {
        let resource = Resource::Created {
            group: group.clone(),
        };
        if let Some(e) = self.find(&resource) {
            if !e.holders.contains(&holder) {
                e.holders.push(holder);
            }
            return Ok(());
        }
        if cg.exists(group) {
            return Ok(());
        }
        cg.create(group)?;
        self.entries.push(Entry {
            resource,
            original: None,
            holders: vec![holder],
        });
        Ok(())
    }

    /// Lets go of everything `holder` held; restores what nobody holds now.
    pub fn release(&mut self, cg: &Cgroups, holder: Holder) {
        for e in &mut self.entries {
            e.holders.retain(|h| h != &holder);
        }
        restore_unheld(cg, self);
    }
}

/// Keeps only entries root may act on: a normalised group path inside its
/// hierarchy and, for files, one of the interface files berth writes.
fn plausible(state: State) -> State {
    let entries = state
        .entries
        .into_iter()
        .filter(|e| {
            let ok = entry_is_plausible(e);
            if !ok {
                log::warn!(
                    "dropping implausible reconcile entry {}",
                    format!("{:?}", e.resource).escape_debug()
                );
            }
            ok
        })
        .collect();
    State { entries }
}

fn entry_is_plausible(e: &Entry) -> bool {
    let original_ok = e
        .original
        .as_deref()
        .is_none_or(|v| v.len() <= 4096 && !v.contains('\0'));
    let resource_ok = match &e.resource {
        Resource::File { group, file } => {
            is_normal_group_path(&group.path) && RESTORABLE_FILES.contains(&file.as_str())
        }
        Resource::Created { group } => is_normal_group_path(&group.path) && group.path != "/",
    };
    original_ok && resource_ok && e.holders.len() <= 4096
}

/// Restores, newest first, every entry nobody holds; keeps an entry whose
/// restore failed (e.g. a group still in use) for a later try.
fn restore_unheld(cg: &Cgroups, state: &mut State) {
    let mut kept = Vec::new();
    for e in std::mem::take(&mut state.entries).into_iter().rev() {
        if !e.holders.is_empty() {
            kept.push(e);
            continue;
        }
        let outcome = match &e.resource {
            Resource::File { group, file } => match &e.original {
                Some(v) => cg.write(group, file, v),
                None => Ok(()),
            },
            Resource::Created { group } => cg.remove(group),
        };
        match outcome {
            Ok(()) => log::debug!("restored {:?}", e.resource),
            Err(err) => {
                log::warn!("cannot restore yet: {err}");
                kept.push(e);
            }
        }
    }
    kept.reverse();
    state.entries = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::testfs::*;
    use crate::cgroup::Hierarchy;

    #[test]
    fn the_last_holder_restores_and_dead_holders_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let m = v1_mounts(&dir.path().join("cg"));
        v1_cpuset(&m, "/", "0-3", "0");
        v1_cpuset(&m, "/ext", "0", "0");
        let cg = Cgroups::new(m);
        let reg = Registry::new(&crate::run_dir::testdir::new("reg-last"));
        let ext = Group::new(Hierarchy::CpusetV1, "/ext");
        let me = Holder::this_process().unwrap();
        let other = Holder {
            pid: me.pid,
            start: me.start + 1,
        }; // a dead step
        let widen = |add: &'static str| {
            move |cur: &str| {
                crate::cpuset::CpuSet::parse(cur)
                    .unwrap()
                    .union(&crate::cpuset::CpuSet::parse(add).unwrap())
                    .to_string()
            }
        };
        reg.with(&cg, |s| {
            s.set_file(&cg, me, &ext, "cpuset.cpus", widen("1"))
        })
        .unwrap();
        assert_eq!(cg.read(&ext, "cpuset.cpus").unwrap(), "0-1");
        // a second step widens further and shares the entry
        reg.with(&cg, |s| {
            s.set_file(&cg, other, &ext, "cpuset.cpus", widen("2"))?;
            s.entries[0].holders.push(other);
            Ok(())
        })
        .unwrap();
        assert_eq!(cg.read(&ext, "cpuset.cpus").unwrap(), "0-2");
        assert_eq!(reg.snapshot().entries[0].original.as_deref(), Some("0"));
        // `other` is dead: when `me` lets go, nobody holds it: restored
        reg.with(&cg, |s| {
            s.release(&cg, me);
            Ok(())
        })
        .unwrap();
        assert_eq!(cg.read(&ext, "cpuset.cpus").unwrap(), "0");
        assert!(reg.snapshot().entries.is_empty());
    }

    #[test]
    fn created_groups_are_removed_by_the_last_holder_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = v1_mounts(&dir.path().join("cg"));
        v1_cpu(&m, "/", 1024);
        v1_cpu(&m, "/existing", 1024);
        let cg = Cgroups::new(m.clone());
        let reg = Registry::new(&crate::run_dir::testdir::new("reg-created"));
        let me = Holder::this_process().unwrap();
        let g = Group::new(Hierarchy::CpuV1, "/berthmade");
        reg.with(&cg, |s| s.create_group(&cg, me, &g)).unwrap();
        assert!(cg.exists(&g));
        let existing = Group::new(Hierarchy::CpuV1, "/existing");
        reg.with(&cg, |s| s.create_group(&cg, me, &existing))
            .unwrap();
        reg.with(&cg, |s| {
            s.release(&cg, me);
            Ok(())
        })
        .unwrap();
        assert!(!cg.exists(&g));
        assert!(
            cg.exists(&existing),
            "a group berth did not make is never removed"
        );
    }

    #[test]
    fn state_json_is_0600_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroups::new(v1_mounts(&dir.path().join("cg")));
        let run = crate::run_dir::testdir::new("reg-mode");
        // SAFETY: umask cannot fail.
        let old = unsafe { libc::umask(0) };
        Registry::new(&run).with(&cg, |_| Ok(())).unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &Path| crate::run_dir::mode_of(&std::fs::metadata(p).unwrap());
        assert_eq!(mode(&run.join("reconcile")), 0o700);
        assert_eq!(mode(&run.join("reconcile/state.json")), 0o600);
        assert_eq!(mode(&run.join("reconcile/lock")), 0o600);
    }

    #[test]
    fn forged_entries_are_dropped_and_never_acted_on() {
        let dir = tempfile::tempdir().unwrap();
        let m = v1_mounts(&dir.path().join("cg"));
        v1_cpu(&m, "/", 1024);
        let cg = Cgroups::new(m);
        let run = crate::run_dir::testdir::new("reg-forged");
        let reg = Registry::new(&run);
        reg.with(&cg, |_| Ok(())).unwrap();
        let victim = dir.path().join("victim");
        let forged = serde_json::json!({"entries": [
            {"resource": {"kind": "file",
                "group": {"hierarchy": "cpu_v1", "path": "/../../victim-dir"},
                "file": "cpu.shares"}, "original": "owned", "holders": []},
            {"resource": {"kind": "file",
                "group": {"hierarchy": "cpu_v1", "path": "/"},
                "file": "../../victim"}, "original": "owned", "holders": []},
            {"resource": {"kind": "created",
                "group": {"hierarchy": "cpu_v1", "path": "/.."}}, "holders": []},
        ]});
        let parsed: State = serde_json::from_value(forged.clone()).unwrap();
        assert_eq!(
            parsed.entries.len(),
            3,
            "the forgery parses; plausible() drops it"
        );
        let state = run.join("reconcile/state.json");
        std::fs::write(&state, forged.to_string()).unwrap();
        reg.with(&cg, |_| Ok(())).unwrap();
        assert!(!victim.exists());
        assert!(dir.path().exists());
        assert!(reg.snapshot().entries.is_empty());
    }

    #[test]
    fn a_group_writable_state_json_is_ignored() {
        let run = crate::run_dir::testdir::new("reg-writable");
        let dir = tempfile::tempdir().unwrap();
        let m = v1_mounts(&dir.path().join("cg"));
        v1_cpu(&m, "/", 1024);
        let cg = Cgroups::new(m);
        let reg = Registry::new(&run);
        reg.with(&cg, |_| Ok(())).unwrap();
        let state = run.join("reconcile/state.json");
        let entry = r#"{"entries":[{"resource":{"kind":"file","group":{"hierarchy":"cpu_v1","path":"/"},"file":"cpu.shares"},"original":"2","holders":[]}]}"#;
        std::fs::write(&state, entry).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(reg.snapshot().entries.is_empty());
    }
}
