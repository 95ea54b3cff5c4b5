//! The symbols Slurm looks up in the plugin, and the panic boundary.
//!
//! Each `slurm_spank_*` callback runs [`crate::plugin::on_hook`] inside
//! `catch_unwind`, logs an error exactly once, and returns 0 or -1 to Slurm.
#![allow(non_upper_case_globals)]

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::ffi::{self, spank_t};
use super::handle::SpankHandle;
use super::Hook;

#[no_mangle]
pub static plugin_name: [u8; 6] = *b"berth\0";
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";
/// Slurm compares major.minor with its own: build against its headers.
#[no_mangle]
pub static plugin_version: u32 = ffi::SLURM_VERSION_NUMBER;

/// Slurm >= 25.05 reads this when a `required` plugin's `slurm_spank_init` fails
/// (src/common/spank.c, `_do_call_stack`: the stack's rc becomes its value).
/// ESPANK_JOB_FAILURE makes slurmd fail the job (`_kill_fail_job` in
/// src/slurmd/slurmd/req.c) and slurmctld treat it as non-fatal
/// (src/slurmctld/proc_req.c): one job's request never drains the node.
#[cfg(slurm_init_failure_mode)]
#[no_mangle]
pub static slurm_spank_init_failure_mode: c_int = ffi::ESPANK_JOB_FAILURE as c_int;

/// The plugstack.conf arguments after the plugin path.
///
/// # Safety
/// `argv` is NULL or holds `argc` NUL-terminated strings.
unsafe fn plugstack_args(argc: c_int, argv: *mut *mut c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        .map(|i| *argv.add(i))
        .filter(|p| !p.is_null())
        .map(|p| CStr::from_ptr(p).to_string_lossy().into_owned())
        .collect()
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

fn dispatch(hook: Hook, sp: spank_t, argc: c_int, argv: *mut *mut c_char) -> c_int {
    super::log::install();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Some(mut handle) = SpankHandle::new(sp) else {
            return -1;
        };
        // SAFETY: Slurm passes the plugstack.conf arguments as argc/argv.
        let args = unsafe { plugstack_args(argc, argv) };
        match crate::plugin::on_hook(hook, &mut handle, &args) {
            Ok(()) => 0,
            Err(e) if e.already_reported() => {
                log::info!("{e}");
                -1
            }
            Err(e) => {
                log::error!("{e}");
                -1
            }
        }
    }));
    outcome.unwrap_or_else(|payload| {
        log::error!(
            "internal error in hook {}: {}; please report this as a berth bug",
            hook.name(),
            panic_text(payload.as_ref())
        );
        -1
    })
}

macro_rules! export_hooks {
    ($($symbol:ident => $hook:expr),* $(,)?) => {$(
        #[no_mangle]
        pub extern "C" fn $symbol(sp: spank_t, argc: c_int, argv: *mut *mut c_char) -> c_int {
            dispatch($hook, sp, argc, argv)
        }
    )*};
}

export_hooks! {
    slurm_spank_init => Hook::Init,
    slurm_spank_init_post_opt => Hook::InitPostOpt,
    slurm_spank_local_user_init => Hook::LocalUserInit,
    slurm_spank_user_init => Hook::UserInit,
    slurm_spank_task_init_privileged => Hook::TaskInitPrivileged,
    slurm_spank_task_post_fork => Hook::TaskPostFork,
    slurm_spank_task_init => Hook::TaskInit,
    slurm_spank_task_exit => Hook::TaskExit,
    slurm_spank_exit => Hook::Exit,
    slurm_spank_slurmd_exit => Hook::SlurmdExit,
}
