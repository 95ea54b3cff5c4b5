//! Generates berth's SPANK bindings from the installed Slurm headers.
use std::env;
use std::path::{Path, PathBuf};

const HEADER_HELP: &str = "berth needs Slurm's development headers to build: \
install the package that provides slurm/spank.h (Debian/Ubuntu: libslurm-dev, \
RHEL-like: slurm-devel), or set SLURM_INCLUDE_DIR to the directory that contains \
slurm/spank.h (e.g. SLURM_INCLUDE_DIR=/opt/slurm/include)";

fn main() {
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    println!("cargo:rerun-if-changed=slurm-headers/wrapper.h");

    let include_dir = env::var("SLURM_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
    let spank_h = Path::new(&include_dir).join("slurm/spank.h");
    if !spank_h.is_file() {
        eprintln!("error: {} not found.\n{HEADER_HELP}", spank_h.display());
        panic!("{} not found. {HEADER_HELP}", spank_h.display());
    }
    println!("cargo:rerun-if-changed={}", spank_h.display());

    let bindings = bindgen::Builder::default()
        .header("slurm-headers/wrapper.h")
        .clang_arg(format!("-I{include_dir}"))
        .allowlist_type("spank_.*")
        .allowlist_type("slurm_err_t")
        .allowlist_var("SLURM_VERSION_NUMBER")
        .allowlist_var("ESPANK_.*")
        .allowlist_var("S_.*")
        .allowlist_var("SPANK_.*")
        .allowlist_function("spank_.*")
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {}: {e}", spank_h.display()));

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("spank_bindings.rs");
    bindings.write_to_file(&out).expect("write spank bindings");

    hwloc_bindings();

    let generated = std::fs::read_to_string(&out).unwrap_or_default();
    println!("cargo:rustc-check-cfg=cfg(slurm_has_prepend_task_argv)");
    if generated.contains("pub fn spank_prepend_task_argv") {
        println!("cargo:rustc-cfg=slurm_has_prepend_task_argv");
    }
    init_failure_mode_cfg(&spank_h, &generated);
}

/// `cfg(slurm_init_failure_mode)`: spank.h declares `slurm_spank_init_failure_mode`
/// (Slurm >= 25.05; Debian sid's 26.05.5) and slurm_errno.h has ESPANK_JOB_FAILURE,
/// so berth can tell Slurm that its failing init fails the job, not the node.
fn init_failure_mode_cfg(spank_h: &Path, generated: &str) {
    println!("cargo:rustc-check-cfg=cfg(slurm_init_failure_mode)");
    let header = std::fs::read_to_string(spank_h).unwrap_or_default();
    if header.contains("slurm_spank_init_failure_mode") && generated.contains("ESPANK_JOB_FAILURE")
    {
        println!("cargo:rustc-cfg=slurm_init_failure_mode");
    }
}

/// hwloc's types and the few functions berth calls, as a struct of function
/// pointers filled by dlopen at run time (see src/topology/hwloc.rs).
fn hwloc_bindings() {
    println!("cargo:rerun-if-changed=/usr/include/hwloc.h");
    let bindings = bindgen::Builder::default()
        .header_contents("hwloc_wrapper.h", "#include <hwloc.h>\n#include <hwloc/export.h>\n")
        .allowlist_type("hwloc_obj")
        .allowlist_type("hwloc_topology_t")
        .allowlist_type("hwloc_obj_type_t")
        .allowlist_type("hwloc_get_type_depth_e")
        .allowlist_type("hwloc_topology_flags_e")
        .allowlist_type("hwloc_type_filter_e")
        .allowlist_var("HWLOC_API_VERSION")
        .allowlist_function("hwloc_topology_(init|load|destroy|set_flags|set_synthetic|set_xmlbuffer|set_io_types_filter|set_all_types_filter|set_type_filter|export_xmlbuffer)")
        .allowlist_function("hwloc_free_xmlbuffer")
        .allowlist_function("hwloc_get_api_version")
        .allowlist_function("hwloc_get_type_depth")
        .allowlist_function("hwloc_get_nbobjs_by_depth")
        .allowlist_function("hwloc_get_obj_by_depth")
        .allowlist_function("hwloc_bitmap_(first|next)")
        .dynamic_library_name("HwlocLib")
        .dynamic_link_require_all(true)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on hwloc.h (install libhwloc-dev): {e}"));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("hwloc_bindings.rs");
    bindings.write_to_file(&out).expect("write hwloc bindings");
}
