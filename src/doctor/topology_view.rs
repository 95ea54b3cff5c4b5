//! The node's topology as the report shows it: counts, NUMA nodes and the
//! mapping from Slurm's abstract core indices to OS CPUs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde::Serialize;

use crate::cpuset::CpuSet;
use crate::topology::Topology;

#[derive(Debug, Clone, Serialize)]
pub struct TopologyView {
    pub sockets: usize,
    pub cores: usize,
    pub threads_per_core: usize,
    pub cpus: CpuSet,
    /// NUMA node -> its CPUs.
    pub numa_nodes: BTreeMap<u32, CpuSet>,
    /// Index = Slurm's abstract core index; value = that core's OS CPUs.
    pub core_cpus: Vec<CpuSet>,
}

impl TopologyView {
    /// `packages` maps each OS CPU to its socket (physical package id).
    pub fn new(topology: &Topology, packages: &BTreeMap<u32, u32>) -> TopologyView {
        let cpus = topology.all_cpus();
        let sockets: BTreeSet<u32> = cpus
            .iter()
            .filter_map(|c| packages.get(&c))
            .copied()
            .collect();
        TopologyView {
            sockets: sockets.len().max(1),
            cores: topology.cores.len(),
            threads_per_core: topology.cores.iter().map(CpuSet::len).max().unwrap_or(1),
            cpus,
            numa_nodes: topology.numa_nodes.clone(),
            core_cpus: topology.cores.clone(),
        }
    }
}

/// OS CPU -> physical package id, from sysfs.
pub fn packages_of_this_system() -> BTreeMap<u32, u32> {
    let Ok(entries) = fs::read_dir("/sys/devices/system/cpu") else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let cpu: u32 = name.strip_prefix("cpu")?.parse().ok()?;
            let id = fs::read_to_string(e.path().join("topology/physical_package_id")).ok()?;
            Some((cpu, id.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_topology_and_the_packages() {
        let t = Topology::synthetic("pack:2 numa:1 core:2 pu:2").unwrap();
        let packages: BTreeMap<u32, u32> = (0..8).map(|c| (c, c / 4)).collect();
        let v = TopologyView::new(&t, &packages);
        assert_eq!((v.sockets, v.cores, v.threads_per_core), (2, 4, 2));
        assert_eq!(v.core_cpus[3], CpuSet::parse("6-7").unwrap());
        assert_eq!(v.numa_nodes.len(), 2);
    }
}
