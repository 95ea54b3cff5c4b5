//! The node's topology as berth needs it: Slurm's abstract core index -> the
//! OS CPUs (every hardware thread) of that core, and NUMA node -> its CPUs.
//!
//! Slurm numbers cores socket by socket, in hwloc's logical order, one index
//! per core (`xcpuinfo_hwloc_topo_get` builds `block_map` that way and
//! `xcpuinfo_abs_to_mac` sets every thread of each allocated core). Walking
//! hwloc's cores in logical order gives the same numbering, because hwloc's
//! logical order is depth-first: all cores of package 0, then of package 1.
//!
//! Discovery costs about 0.6 ms here, loading an XML export 0.05 ms; the
//! export is cached (`topology_cache=`) and rebuilt after a reboot.

mod hwloc;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cpuset::CpuSet;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot open hwloc ({0}); install libhwloc15")]
    Library(String),
    #[error("{call} failed: {error}")]
    Hwloc { call: String, error: String },
    #[error("invalid topology: {0}")]
    Invalid(String),
    #[error("Slurm core {core} is not on this node, which has {cores} cores (abstract indices 0-{last})", last = cores.saturating_sub(1))]
    NoSuchCore { core: u32, cores: usize },
}

/// The facts berth takes from hwloc; plain data, built by hand in tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topology {
    /// Index = Slurm's abstract core index; value = that core's OS CPUs.
    pub cores: Vec<CpuSet>,
    /// NUMA node OS index -> its CPUs.
    pub numa_nodes: BTreeMap<u32, CpuSet>,
}

/// Where a loaded topology came from (for the debug log and `berth doctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Cache,
    Discovered,
}

impl Topology {
    /// The running machine (all CPUs, also those outside this process's cpuset).
    pub fn discover() -> Result<Topology, TopologyError> {
        Topology::from_loaded(&hwloc::Loaded::load(hwloc::Source::ThisSystem)?)
    }

    /// A synthetic machine, e.g. `pack:2 numa:2 core:4 pu:2` (hwloc's syntax).
    pub fn synthetic(description: &str) -> Result<Topology, TopologyError> {
        Topology::from_loaded(&hwloc::Loaded::load(hwloc::Source::Synthetic(description))?)
    }

    /// A machine from an hwloc XML export.
    pub fn from_xml(xml: &str) -> Result<Topology, TopologyError> {
        Topology::from_loaded(&hwloc::Loaded::load(hwloc::Source::Xml(xml))?)
    }

    fn from_loaded(loaded: &hwloc::Loaded) -> Result<Topology, TopologyError> {
        let mut units = loaded.objects(hwloc::HWLOC_OBJ_CORE);
        if units.is_empty() {
            // No core information (some virtual machines): Slurm then counts
            // one core per PU.
            units = loaded.objects(hwloc::HWLOC_OBJ_PU);
        }
        let cores: Vec<CpuSet> = units.iter().map(|&o| loaded.cpuset_of(o)).collect();
        if cores.is_empty() || cores.iter().any(CpuSet::is_empty) {
            return Err(TopologyError::Invalid("no cores with CPUs".into()));
        }
        let numa_nodes = loaded
            .numa_nodes()
            .iter()
            .map(|&o| (loaded.os_index(o), loaded.cpuset_of(o)))
            .collect();
        Ok(Topology { cores, numa_nodes })
    }

    /// The XML export of a synthetic machine or of this one (for the cache).
    fn export_this_system() -> Result<(Topology, String), TopologyError> {
        let loaded = hwloc::Loaded::load(hwloc::Source::ThisSystem)?;
        Ok((Topology::from_loaded(&loaded)?, loaded.export_xml()?))
    }

    /// Exports a synthetic machine as XML (tests of the cache).
    pub fn synthetic_xml(description: &str) -> Result<String, TopologyError> {
        hwloc::Loaded::load(hwloc::Source::Synthetic(description))?.export_xml()
    }

    /// Loads this machine's topology from the XML cache when it was written
    /// since the last boot, else discovers it and rewrites the cache. A cache
    /// that cannot be written is not an error (the next step tries again).
    pub fn load(cache: Option<&Path>) -> Result<(Topology, Origin), TopologyError> {
        let Some(cache) = cache else {
            return Ok((Topology::discover()?, Origin::Discovered));
        };
        if cache_is_fresh(cache) {
            if let Ok(xml) = fs::read_to_string(cache) {
                match Topology::from_xml(&xml) {
                    Ok(t) => return Ok((t, Origin::Cache)),
                    Err(e) => log::debug!("ignoring topology cache {}: {e}", cache.display()),
                }
            }
        }
        let (topology, xml) = Topology::export_this_system()?;
        if let Err(e) = write_atomically(cache, &xml) {
            log::debug!("cannot write topology cache {}: {e}", cache.display());
        }
        Ok((topology, Origin::Discovered))
    }

    /// Every CPU of the node.
    pub fn all_cpus(&self) -> CpuSet {
        self.cores.iter().fold(CpuSet::new(), |acc, c| acc.union(c))
    }

    /// Every NUMA node of the node.
    pub fn all_mems(&self) -> CpuSet {
        self.numa_nodes.keys().copied().collect()
    }

    /// Slurm's abstract core list (S_STEP_ALLOC_CORES) -> OS CPUs, every
    /// hardware thread of each core, as `xcpuinfo_abs_to_mac` does.
    pub fn cpus_of_cores(&self, cores: &CpuSet) -> Result<CpuSet, TopologyError> {
        let mut cpus = CpuSet::new();
        for core in cores.iter() {
            let threads = self
                .cores
                .get(core as usize)
                .ok_or(TopologyError::NoSuchCore {
                    core,
                    cores: self.cores.len(),
                })?;
            cpus = cpus.union(threads);
        }
        Ok(cpus)
    }

    /// The NUMA nodes holding any of these CPUs (the memory nodes a step on
    /// them needs). A machine without NUMA information has node 0.
    pub fn mems_of(&self, cpus: &CpuSet) -> CpuSet {
        if self.numa_nodes.is_empty() {
            return CpuSet::parse("0").unwrap_or_default();
        }
        self.numa_nodes
            .iter()
            .filter(|(_, node_cpus)| !node_cpus.intersection(cpus).is_empty())
            .map(|(&node, _)| node)
            .collect()
    }
}

/// The cache is usable when it was written after the machine booted.
fn cache_is_fresh(cache: &Path) -> bool {
    let Ok(modified) = fs::metadata(cache).and_then(|m| m.modified()) else {
        return false;
    };
    match boot_time() {
        Some(boot) => modified > boot,
        None => false,
    }
}

fn boot_time() -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    /// Slurm's own algorithm (xcpuinfo_hwloc_topo_get + xcpuinfo_abs_to_mac)
    /// over a machine given as sockets -> cores -> PU OS numbers, for
    /// comparing berth's mapping against it.
    fn slurm_abs_to_mac(machine: &[Vec<Vec<u32>>], abs_cores: &CpuSet) -> CpuSet {
        let threads = machine[0][0].len();
        let mut block_map = Vec::new();
        for socket in machine {
            for core in socket {
                block_map.extend(core.iter().take(threads));
            }
        }
        let mut mac = CpuSet::new();
        for icore in abs_cores.iter() {
            for t in 0..threads {
                mac.insert(block_map[icore as usize * threads + t]);
            }
        }
        mac
    }

    #[test]
    fn two_sockets_with_smt_map_every_thread_of_each_core() {
        let t = Topology::synthetic("pack:2 core:4 pu:2").unwrap();
        assert_eq!(t.cores.len(), 8);
        assert_eq!(t.cores[0], set("0-1"));
        assert_eq!(t.cores[7], set("14-15"));
        assert_eq!(t.cpus_of_cores(&set("0-2,7")).unwrap(), set("0-5,14-15"));
        assert_eq!(t.all_cpus(), set("0-15"));
    }

    #[test]
    fn linux_style_sibling_numbering_matches_slurms_algorithm() {
        // Linux numbers the second thread of every core after all first
        // threads: core 0 = CPUs 0 and 8 on a 2x4x2 machine.
        let t = Topology::synthetic(
            "pack:2 core:4 pu:2(indexes=0,8,1,9,2,10,3,11,4,12,5,13,6,14,7,15)",
        )
        .unwrap();
        let machine: Vec<Vec<Vec<u32>>> = (0..2)
            .map(|s| (0..4).map(|c| vec![s * 4 + c, s * 4 + c + 8]).collect())
            .collect();
        for cores in ["0", "1-2", "0-2,7", "4-7", "0-7", "3,5"] {
            assert_eq!(
                t.cpus_of_cores(&set(cores)).unwrap(),
                slurm_abs_to_mac(&machine, &set(cores)),
                "cores {cores}"
            );
        }
        assert_eq!(t.cpus_of_cores(&set("0")).unwrap(), set("0,8"));
        assert_eq!(t.cpus_of_cores(&set("4")).unwrap(), set("4,12"));
    }

    #[test]
    fn numa_nodes_give_the_memory_nodes_of_cpus() {
        let t = Topology::synthetic("pack:2 numa:2 core:4 pu:2").unwrap();
        assert_eq!(t.numa_nodes.len(), 4);
        assert_eq!(t.numa_nodes[&0], set("0-7"));
        assert_eq!(t.numa_nodes[&3], set("24-31"));
        assert_eq!(t.all_mems(), set("0-3"));
        let cpus = t.cpus_of_cores(&set("3-4")).unwrap();
        assert_eq!(cpus, set("6-9"));
        assert_eq!(t.mems_of(&cpus), set("0-1"));
        assert_eq!(t.mems_of(&set("31")), set("3"));
    }

    #[test]
    fn a_core_beyond_the_node_is_an_error() {
        let t = Topology::synthetic("core:2 pu:1").unwrap();
        let e = t.cpus_of_cores(&set("0-2")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Slurm core 2 is not on this node, which has 2 cores (abstract indices 0-1)"
        );
    }

    #[test]
    fn xml_export_loads_back_the_same_topology() {
        let xml = Topology::synthetic_xml("pack:2 numa:2 core:2 pu:2").unwrap();
        let t = Topology::from_xml(&xml).unwrap();
        assert_eq!(t, Topology::synthetic("pack:2 numa:2 core:2 pu:2").unwrap());
        assert!(Topology::from_xml("<not xml").is_err());
    }

    #[test]
    fn the_cache_is_written_then_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("sub/topology.xml");
        let (first, origin) = Topology::load(Some(&cache)).unwrap();
        assert_eq!(origin, Origin::Discovered);
        assert!(cache.is_file());
        let (second, origin) = Topology::load(Some(&cache)).unwrap();
        assert_eq!(origin, Origin::Cache);
        assert_eq!(first, second);
        // A corrupt cache is replaced by a fresh discovery.
        fs::write(&cache, "garbage").unwrap();
        let (third, origin) = Topology::load(Some(&cache)).unwrap();
        assert_eq!(origin, Origin::Discovered);
        assert_eq!(third, first);
    }

    #[test]
    fn this_machine_maps_all_its_cpus() {
        let t = Topology::discover().unwrap();
        let online = fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        assert_eq!(t.all_cpus(), set(&online));
    }
}
