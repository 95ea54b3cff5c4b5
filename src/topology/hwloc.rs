//! The few hwloc calls berth needs, on a libhwloc opened at run time.
//!
//! Why not the `hwloc2` crate: its 2.2 release only discovers the running
//! machine (`Topology::new`/`with_flags`); it cannot load a synthetic
//! description or an XML export, cannot export XML, and keeps its FFI module
//! and topology handle private, so none of that can be added from outside.
//! berth needs all three (unit tests on synthetic machines, the XML cache), so
//! it binds the dozen functions it calls itself (bindgen over hwloc.h in
//! build.rs) and opens `libhwloc.so.15` with dlopen, in slurmstepd only: srun
//! and sbatch load the same plugin and must not need libhwloc.
#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::upper_case_acronyms,
    clippy::missing_safety_doc,
    clippy::too_many_arguments,
    clippy::useless_transmute,
    clippy::ptr_offset_with_cast
)]

use std::ffi::{c_char, c_int, CString};
use std::sync::OnceLock;

use super::TopologyError;
use crate::cpuset::CpuSet;

mod sys {
    #![allow(
        non_camel_case_types,
        non_upper_case_globals,
        non_snake_case,
        dead_code,
        unused_imports,
        clippy::all
    )]
    include!(concat!(env!("OUT_DIR"), "/hwloc_bindings.rs"));
}

use sys::*;

/// The library names tried, newest ABI first (hwloc 2.x keeps soname 15).
const LIBRARY_NAMES: &[&str] = &["libhwloc.so.15", "libhwloc.so"];

fn lib() -> Result<&'static HwlocLib, TopologyError> {
    static LIB: OnceLock<Result<HwlocLib, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let mut errors = Vec::new();
        for name in LIBRARY_NAMES {
            // SAFETY: loading libhwloc runs no code with preconditions of ours;
            // every symbol bound is declared as hwloc.h declares it.
            match unsafe { HwlocLib::new(*name) } {
                Ok(lib) => return Ok(lib),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(errors.join("; "))
    })
    .as_ref()
    .map_err(|e| TopologyError::Library(e.clone()))
}

/// How to build the topology.
pub enum Source<'a> {
    /// The running machine, including CPUs outside this process's cpuset.
    ThisSystem,
    /// A synthetic description such as `pack:2 numa:2 core:4 pu:2`.
    Synthetic(&'a str),
    /// An XML export.
    Xml(&'a str),
}

/// A loaded hwloc topology, destroyed on drop.
pub struct Loaded {
    lib: &'static HwlocLib,
    topo: hwloc_topology_t,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: topo came from hwloc_topology_init and is destroyed once.
        unsafe { self.lib.hwloc_topology_destroy(self.topo) };
    }
}

fn check(rc: c_int, call: &str) -> Result<(), TopologyError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(TopologyError::Hwloc {
            call: call.to_string(),
            error: std::io::Error::last_os_error().to_string(),
        })
    }
}

impl Loaded {
    pub fn load(source: Source<'_>) -> Result<Loaded, TopologyError> {
        let lib = lib()?;
        let mut topo: hwloc_topology_t = std::ptr::null_mut();
        // SAFETY: init writes a new topology handle into `topo`.
        check(
            unsafe { lib.hwloc_topology_init(&mut topo) },
            "hwloc_topology_init",
        )?;
        let loaded = Loaded { lib, topo };
        loaded.configure(source)?;
        // SAFETY: a configured, not yet loaded topology.
        check(
            unsafe { lib.hwloc_topology_load(loaded.topo) },
            "hwloc_topology_load",
        )?;
        Ok(loaded)
    }

    fn configure(&self, source: Source<'_>) -> Result<(), TopologyError> {
        let (lib, topo) = (self.lib, self.topo);
        // Slurm discovers the whole machine (HWLOC_TOPOLOGY_FLAG_WHOLE_SYSTEM,
        // now INCLUDE_DISALLOWED): slurmstepd may itself sit in a narrow cpuset.
        let flags = HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED as std::ffi::c_ulong;
        // SAFETY: topo is initialized and not loaded; strings are NUL-terminated
        // and outlive the calls (hwloc copies them).
        unsafe {
            check(
                lib.hwloc_topology_set_flags(topo, flags),
                "hwloc_topology_set_flags",
            )?;
            // Caches are not needed to map cores; skipping them is cheaper.
            for t in [
                HWLOC_OBJ_L1CACHE,
                HWLOC_OBJ_L2CACHE,
                HWLOC_OBJ_L3CACHE,
                HWLOC_OBJ_L4CACHE,
                HWLOC_OBJ_L5CACHE,
                HWLOC_OBJ_L1ICACHE,
                HWLOC_OBJ_L2ICACHE,
                HWLOC_OBJ_L3ICACHE,
                HWLOC_OBJ_MISC,
            ] {
                lib.hwloc_topology_set_type_filter(topo, t, HWLOC_TYPE_FILTER_KEEP_NONE);
            }
            check(
                lib.hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_NONE),
                "hwloc_topology_set_io_types_filter",
            )?;
            match source {
                Source::ThisSystem => Ok(()),
                Source::Synthetic(desc) => {
                    let c = cstring(desc)?;
                    check(
                        lib.hwloc_topology_set_synthetic(topo, c.as_ptr()),
                        &format!("hwloc_topology_set_synthetic(\"{desc}\")"),
                    )
                }
                Source::Xml(xml) => {
                    let c = cstring(xml)?;
                    let len = c_int::try_from(xml.len() + 1)
                        .map_err(|_| TopologyError::Invalid("XML too large".into()))?;
                    check(
                        lib.hwloc_topology_set_xmlbuffer(topo, c.as_ptr(), len),
                        "hwloc_topology_set_xmlbuffer",
                    )
                }
            }
        }
    }

    /// The topology as hwloc XML (for the cache).
    pub fn export_xml(&self) -> Result<String, TopologyError> {
        let mut buf: *mut c_char = std::ptr::null_mut();
        let mut len: c_int = 0;
        // SAFETY: a loaded topology; hwloc allocates `buf`, freed below.
        unsafe {
            check(
                self.lib
                    .hwloc_topology_export_xmlbuffer(self.topo, &mut buf, &mut len, 0),
                "hwloc_topology_export_xmlbuffer",
            )?;
            if buf.is_null() {
                return Err(TopologyError::Invalid("hwloc exported no XML".into()));
            }
            let text = std::ffi::CStr::from_ptr(buf).to_string_lossy().into_owned();
            self.lib.hwloc_free_xmlbuffer(self.topo, buf);
            Ok(text)
        }
    }

    fn objects_at_depth(&self, depth: c_int) -> Vec<hwloc_obj_t> {
        if depth == HWLOC_TYPE_DEPTH_UNKNOWN || depth == HWLOC_TYPE_DEPTH_MULTIPLE {
            return Vec::new();
        }
        // SAFETY: a loaded topology; valid (possibly virtual) depth.
        let n = unsafe { self.lib.hwloc_get_nbobjs_by_depth(self.topo, depth) };
        (0..n)
            // SAFETY: 0 <= i < n objects exist at that depth.
            .map(|i| unsafe { self.lib.hwloc_get_obj_by_depth(self.topo, depth, i) })
            .filter(|o| !o.is_null())
            .collect()
    }

    /// The objects of a type, in hwloc's logical order.
    pub fn objects(&self, kind: hwloc_obj_type_t) -> Vec<hwloc_obj_t> {
        // SAFETY: a loaded topology.
        let depth = unsafe { self.lib.hwloc_get_type_depth(self.topo, kind) };
        self.objects_at_depth(depth)
    }

    pub fn numa_nodes(&self) -> Vec<hwloc_obj_t> {
        self.objects_at_depth(HWLOC_TYPE_DEPTH_NUMANODE)
    }

    /// The OS numbers of the PUs in an object's cpuset.
    pub fn cpuset_of(&self, obj: hwloc_obj_t) -> CpuSet {
        // SAFETY: obj belongs to this loaded topology; its cpuset is owned by it.
        unsafe {
            let bitmap = (*obj).cpuset;
            if bitmap.is_null() {
                return CpuSet::new();
            }
            let mut set = CpuSet::new();
            let mut id = self.lib.hwloc_bitmap_first(bitmap);
            while id >= 0 {
                set.insert(id as u32);
                id = self.lib.hwloc_bitmap_next(bitmap, id);
            }
            set
        }
    }

    pub fn os_index(&self, obj: hwloc_obj_t) -> u32 {
        // SAFETY: obj belongs to this loaded topology.
        unsafe { (*obj).os_index }
    }
}

fn cstring(s: &str) -> Result<CString, TopologyError> {
    CString::new(s).map_err(|_| TopologyError::Invalid("NUL byte in topology text".into()))
}

pub use sys::{hwloc_obj_type_t, HWLOC_OBJ_CORE, HWLOC_OBJ_PU};
