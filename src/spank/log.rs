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

/// The full text of a berth log line, as it appears in slurmd's log. Control
/// characters are escaped: user text (image paths, options) never starts a forged
/// line of its own.
pub fn line(message: &std::fmt::Arguments<'_>) -> String {
    let label = STEP_LABEL.lock().unwrap_or_else(|p| p.into_inner());
    let message = message.to_string();
    let message = escape_controls(&message);
    if label.is_empty() {
        format!("berth: {message}")
    } else {
        format!("berth: {label}: {message}")
    }
}

/// One `berth: ...` line for srun's stderr, newline-terminated, control
/// characters escaped.
pub fn user_line(text: &str) -> String {
    format!("berth: {}\n", escape_controls(text))
}

/// `text` with every control character (C0, DEL, C1) written as an escape:
/// `\n`, `\r`, `\t`, else `\xHH` / `\u{HHHH}`.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => out += &format!("\\x{:02x}", c as u32),
            c if c.is_control() => out += &format!("\\u{{{:04x}}}", c as u32),
            c => out.push(c),
        }
    }
    out.into()
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
        let Ok(c) = CString::new(text) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_forge_a_log_line() {
        let image = "/x.sif\nberth: job 9.0: cpuset_policy=off\r\u{1b}[2J\0\u{85}";
        let text = line(&format_args!("container step refused: cannot open {image}"));
        assert!(!text.chars().any(char::is_control), "{text}");
        assert!(
            text.ends_with(r"/x.sif\nberth: job 9.0: cpuset_policy=off\r\x1b[2J\x00\u{0085}"),
            "{text}"
        );
        assert_eq!(user_line("a\nb"), "berth: a\\nb\n");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_controls("no controls here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
