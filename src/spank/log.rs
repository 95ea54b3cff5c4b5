//! Routes the `log` crate to Slurm's log functions, so berth's messages land
//! in slurmd's log (and, from the task hooks, on srun's stderr).
//!
//! Every line reads `berth: job J.S: message`; the job label is set once per
//! hook by the dispatcher.

use std::ffi::CString;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use super::ffi;

static STEP_LABEL: Mutex<String> = Mutex::new(String::new());

/// Sets the `job J.S: ` label put in front of every message.
pub fn set_step_label(label: String) {
    *STEP_LABEL.lock().unwrap_or_else(|p| p.into_inner()) = label;
}

/// The full text of a berth log line, as it appears in slurmd's log.
pub fn line(message: &std::fmt::Arguments<'_>) -> String {
    let label = STEP_LABEL.lock().unwrap_or_else(|p| p.into_inner());
    if label.is_empty() {
        format!("berth: {message}")
    } else {
        format!("berth: {label}: {message}")
    }
}

struct SlurmLogger;

impl Log for SlurmLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let Some(api) = ffi::api() else { return };
        let text = line(record.args());
        let text = match record.level() {
            Level::Warn => format!("warning: {text}"),
            _ => text,
        };
        let Ok(c) = CString::new(text.replace('\0', "\\0")) else {
            return;
        };
        let f = match record.level() {
            Level::Error => api.log_error,
            Level::Warn | Level::Info => api.log_info,
            Level::Debug => api.log_verbose,
            Level::Trace => api.log_debug,
        };
        // SAFETY: "%s" with one NUL-terminated string argument.
        unsafe { f(c"%s".as_ptr(), c.as_ptr()) };
    }

    fn flush(&self) {}
}

/// Installs the Slurm logger once per process (later calls do nothing).
pub fn install() {
    static LOGGER: SlurmLogger = SlurmLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Trace);
    }
}
