//! Running mksquashfs (Debian package squashfs-tools, 4.5 or later).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::sif::error::SifError;
use crate::sif::squashfs::Compression;
use crate::sif::Result;

/// How to run mksquashfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mksquashfs {
    /// The program (found on `PATH` unless absolute).
    pub program: PathBuf,
    pub compression: Compression,
    /// Reproducible output: every file time and the filesystem time set to this.
    pub fixed_time: Option<u32>,
    /// Number of compressor threads (mksquashfs uses every CPU by default).
    pub processors: Option<u32>,
}

impl Default for Mksquashfs {
    fn default() -> Self {
        Mksquashfs {
            program: PathBuf::from("mksquashfs"),
            compression: Compression::Gzip,
            fixed_time: None,
            processors: None,
        }
    }
}

impl Mksquashfs {
    /// The arguments for building `out` from the directory `source`, adding the pseudo
    /// definitions in `pseudo_file` and leaving out `excludes` (paths relative to
    /// `source`, which the pseudo definitions replace).
    pub fn args(
        &self,
        source: &Path,
        out: &Path,
        pseudo_file: Option<&Path>,
        excludes: &[String],
    ) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![source.into(), out.into()];
        let mut push = |a: &str| args.push(a.into());
        // -all-root: the files belong to root in the image, whoever built it; and
        // the image's / is traversable by everyone, whatever the source dir's mode.
        for a in [
            "-noappend",
            "-all-root",
            "-root-mode",
            "755",
            "-no-progress",
            "-quiet",
        ] {
            push(a);
        }
        push("-comp");
        push(self.compression.name());
        if let Some(t) = self.fixed_time {
            let t = t.to_string();
            for a in ["-mkfs-time", &t, "-all-time", &t] {
                push(a);
            }
        }
        if let Some(n) = self.processors {
            push("-processors");
            push(&n.to_string());
        }
        if let Some(p) = pseudo_file {
            args.push("-pf".into());
            args.push(p.into());
        }
        if !excludes.is_empty() {
            // -e takes every argument after it, so it comes last.
            args.push("-e".into());
            args.extend(excludes.iter().map(Into::into));
        }
        args
    }

    /// Runs mksquashfs; see [`Mksquashfs::args`].
    pub fn run(
        &self,
        source: &Path,
        out: &Path,
        pseudo_file: Option<&Path>,
        excludes: &[String],
    ) -> Result<()> {
        let program = self.program.display().to_string();
        let output = Command::new(&self.program)
            .args(self.args(source, out, pseudo_file, excludes))
            // mksquashfs refuses SOURCE_DATE_EPOCH together with -all-time; berth
            // passes the time explicitly.
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| SifError::Spawn {
                program: program.clone(),
                package: "squashfs-tools",
                source,
            })?;
        if !output.status.success() {
            return Err(SifError::ToolFailed {
                program,
                status: output.status.to_string(),
                stderr: last_lines(&output.stderr, &output.stdout),
            });
        }
        Ok(())
    }
}

/// The last lines mksquashfs printed, for the error message.
fn last_lines(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_builds_fix_every_time_and_excludes_come_last() {
        let m = Mksquashfs {
            fixed_time: Some(0),
            processors: Some(1),
            compression: Compression::Zstd,
            ..Mksquashfs::default()
        };
        let args: Vec<String> = m
            .args(
                Path::new("/r"),
                Path::new("/o.sqfs"),
                Some(Path::new("/p")),
                &["a/b".to_string()],
            )
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "/r /o.sqfs -noappend -all-root -root-mode 755 -no-progress -quiet -comp zstd -mkfs-time 0 \
             -all-time 0 -processors 1 -pf /p -e a/b"
        );
    }
}
