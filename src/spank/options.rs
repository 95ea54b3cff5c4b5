//! User options registered with Slurm, and the values Slurm hands back.
//!
//! Slurm calls one C callback per option use, in srun and again in
//! slurmstepd (from the launch message); it may call it more than once for the
//! same option. Values are kept by option name, last one wins.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{Mutex, MutexGuard};

use super::ffi::spank_option;
use super::{OptionSpec, SpankError, SpankResult};

/// Option names by the `val` Slurm passes back, and the values seen.
#[derive(Default)]
struct Registry {
    names: Vec<String>,
    values: BTreeMap<String, Option<String>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    names: Vec::new(),
    values: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The value given for an option: `None` if not used, `Some(None)` for a flag.
pub fn value(name: &str) -> Option<Option<String>> {
    registry().values.get(name).cloned()
}

/// Every option value seen in this process, by option name.
pub fn all_values() -> BTreeMap<String, Option<String>> {
    registry().values.clone()
}

/// Records a value as the callback would (used by the callback and by tests).
pub fn record(name: &str, value: Option<&str>) {
    registry()
        .values
        .insert(name.to_string(), value.map(str::to_string));
}

fn leak(what: &str, s: &str) -> SpankResult<*mut c_char> {
    let c = CString::new(s)
        .map_err(|_| SpankError::Invalid(format!("option {what} contains a NUL byte: {s:?}")))?;
    Ok(c.into_raw())
}

/// Builds the C option struct; its strings are leaked on purpose, since Slurm
/// keeps pointers to them for the life of the process.
pub(super) fn c_option(spec: &OptionSpec) -> SpankResult<spank_option> {
    let val = {
        let mut reg = registry();
        match reg.names.iter().position(|n| n == &spec.name) {
            Some(i) => i,
            None => {
                reg.names.push(spec.name.clone());
                reg.names.len() - 1
            }
        }
    };
    Ok(spank_option {
        name: leak("name", &spec.name)?,
        arginfo: match &spec.arginfo {
            Some(a) => leak("arginfo", a)?,
            None => std::ptr::null_mut(),
        },
        usage: leak("usage", &spec.usage)?,
        has_arg: spec.arginfo.is_some() as c_int,
        val: val as c_int,
        cb: Some(option_callback),
    })
}

extern "C" fn option_callback(val: c_int, optarg: *const c_char, _remote: c_int) -> c_int {
    let result = std::panic::catch_unwind(|| {
        let name = registry().names.get(val as usize).cloned();
        let Some(name) = name else { return -1 };
        let arg = (!optarg.is_null())
            // SAFETY: Slurm passes a NUL-terminated argument or NULL.
            .then(|| {
                unsafe { CStr::from_ptr(optarg) }
                    .to_string_lossy()
                    .into_owned()
            });
        record(&name, arg.as_deref());
        0
    });
    result.unwrap_or(-1)
}
