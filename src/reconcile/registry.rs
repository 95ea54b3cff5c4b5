//! Changes several slurmstepd processes share: a widened cpuset, a cpu group
//! berth created, a weight berth set. Each is recorded under a lock in
//! `<run_dir>/reconcile/state.json` with its original value and the steps
//! (pid + start time) holding it; the last step to let go restores it. A
//! holder that died without letting go (slurmstepd killed) is dropped the
//! next time any step takes the lock.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::cgroup::{CgroupError, Cgroups, Group};

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
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

pub struct Registry {
    dir: PathBuf,
}

struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own open descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Registry {
    pub fn new(run_dir: &Path) -> Registry {
        Registry {
            dir: run_dir.join("reconcile"),
        }
    }

    fn io(path: &Path) -> impl Fn(io::Error) -> RegistryError + '_ {
        move |error| RegistryError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    fn lock(&self) -> Result<Lock, RegistryError> {
        fs::create_dir_all(&self.dir).map_err(Registry::io(&self.dir))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Registry::io(&path))?;
        // SAFETY: flock on an open descriptor; released by Lock's drop.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Registry::io(&path)(io::Error::last_os_error()));
        }
        Ok(Lock(file))
    }

    fn load(&self) -> State {
        fs::read_to_string(self.dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save(&self, state: &State) -> Result<(), RegistryError> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join(format!("state.json.{}", std::process::id()));
        let text = serde_json::to_string_pretty(state).unwrap_or_default();
        fs::write(&tmp, text).map_err(Registry::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Registry::io(&path))
    }

    /// Runs `f` on the shared state under the lock, after restoring what
    /// only dead steps still held, and saves the result.
    pub fn with<T>(
        &self,
        cg: &Cgroups,
        f: impl FnOnce(&mut State) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let _lock = self.lock()?;
        let mut state = self.load();
        for e in &mut state.entries {
            e.holders.retain(Holder::alive);
        }
        restore_unheld(cg, &mut state);
        let out = f(&mut state);
        self.save(&state)?;
        out
    }

    /// The recorded state (for `berth doctor` and tests).
    pub fn snapshot(&self) -> State {
        self.load()
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
        let reg = Registry::new(&dir.path().join("run"));
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
        let reg = Registry::new(dir.path());
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
}
