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

    let generated = std::fs::read_to_string(&out).unwrap_or_default();
    println!("cargo:rustc-check-cfg=cfg(slurm_has_prepend_task_argv)");
    if generated.contains("pub fn spank_prepend_task_argv") {
        println!("cargo:rustc-cfg=slurm_has_prepend_task_argv");
    }
}
