//! CPU architectures: SIF's two-digit codes, the host's architecture, and which images
//! a host can run.
//!
//! The rules are Apptainer's (`internal/pkg/util/machine`): an image runs on a host of
//! the same architecture, on the 64-bit sibling of a 32-bit architecture (386 on
//! amd64, arm on arm64, mips on mips64, mipsle on mips64le), or anywhere the kernel has
//! an enabled, persistent (`F` flag) binfmt_misc entry for the image's ELF magic. An
//! image whose architecture is unknown (`00` or garbage) is not refused.

use std::fmt;
use std::fs;
use std::path::Path;

/// Where the kernel lists binfmt_misc interpreters.
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// A CPU architecture as SIF records it (named as Go's `GOARCH`, like siftool does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `00`, or any code SIF does not define.
    Unknown,
    I386,
    Amd64,
    Arm,
    Arm64,
    Ppc64,
    Ppc64le,
    Mips,
    Mipsle,
    Mips64,
    Mips64le,
    S390x,
    Riscv64,
    Loong64,
}

/// Each known architecture with its SIF code and its Go name.
const TABLE: &[(Arch, [u8; 3], &str)] = &[
    (Arch::I386, *b"01\0", "386"),
    (Arch::Amd64, *b"02\0", "amd64"),
    (Arch::Arm, *b"03\0", "arm"),
    (Arch::Arm64, *b"04\0", "arm64"),
    (Arch::Ppc64, *b"05\0", "ppc64"),
    (Arch::Ppc64le, *b"06\0", "ppc64le"),
    (Arch::Mips, *b"07\0", "mips"),
    (Arch::Mipsle, *b"08\0", "mipsle"),
    (Arch::Mips64, *b"09\0", "mips64"),
    (Arch::Mips64le, *b"10\0", "mips64le"),
    (Arch::S390x, *b"11\0", "s390x"),
    (Arch::Riscv64, *b"12\0", "riscv64"),
    (Arch::Loong64, *b"13\0", "loong64"),
];

/// The code SIF stores for an unknown architecture.
const UNKNOWN_CODE: [u8; 3] = *b"00\0";

/// 32-bit architectures a 64-bit host runs natively: (image, host).
const RUNS_ON_64BIT_SIBLING: &[(Arch, Arch)] = &[
    (Arch::I386, Arch::Amd64),
    (Arch::Arm, Arch::Arm64),
    (Arch::Mips, Arch::Mips64),
    (Arch::Mipsle, Arch::Mips64le),
];

impl Arch {
    /// Every known architecture.
    pub fn all() -> impl Iterator<Item = Arch> {
        TABLE.iter().map(|&(arch, _, _)| arch)
    }

    /// The architecture stored as `code` (three bytes: two digits and a NUL).
    pub fn from_code(code: [u8; 3]) -> Arch {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map_or(Arch::Unknown, |&(arch, _, _)| arch)
    }

    /// The three bytes SIF stores for this architecture.
    pub fn code(self) -> [u8; 3] {
        TABLE
            .iter()
            .find(|(a, _, _)| *a == self)
            .map_or(UNKNOWN_CODE, |&(_, code, _)| code)
    }

    /// The Go name (`amd64`, `386`, ...), or `unknown`.
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(a, _, _)| *a == self)
            .map_or("unknown", |&(_, _, name)| name)
    }

    /// The architecture named `name` (Go names, plus the usual kernel names such as
    /// `x86_64` and `aarch64`).
    pub fn from_name(name: &str) -> Option<Arch> {
        let alias = match name {
            "x86_64" => "amd64",
            "i386" | "i686" | "x86" => "386",
            "aarch64" => "arm64",
            "riscv64gc" => "riscv64",
            "loongarch64" => "loong64",
            other => other,
        };
        TABLE
            .iter()
            .find(|(_, _, n)| *n == alias)
            .map(|&(arch, _, _)| arch)
    }

    /// The architecture berth itself was compiled for (Go's `runtime.GOARCH`).
    pub fn host() -> Arch {
        let big = cfg!(target_endian = "big");
        match std::env::consts::ARCH {
            "x86" => Arch::I386,
            "x86_64" => Arch::Amd64,
            "arm" => Arch::Arm,
            "aarch64" => Arch::Arm64,
            "powerpc64" if big => Arch::Ppc64,
            "powerpc64" => Arch::Ppc64le,
            "mips" if big => Arch::Mips,
            "mips" => Arch::Mipsle,
            "mips64" if big => Arch::Mips64,
            "mips64" => Arch::Mips64le,
            "s390x" => Arch::S390x,
            "riscv64" => Arch::Riscv64,
            "loongarch64" => Arch::Loong64,
            _ => Arch::Unknown,
        }
    }

    /// Whether a `host` runs this architecture's binaries without emulation.
    pub fn runs_natively_on(self, host: Arch) -> bool {
        self == Arch::Unknown || self == host || RUNS_ON_64BIT_SIBLING.contains(&(self, host))
    }

    /// The first 20 bytes of an executable of this architecture (ELF identification,
    /// `e_type` = executable, `e_machine`), as binfmt_misc entries match them.
    pub fn elf_magic(self) -> Option<[u8; 20]> {
        let (machine, class, big_endian) = ELF_FORMATS
            .iter()
            .find(|f| f.arch == self)
            .map(|f| (f.machine, f.class, f.big_endian))?;
        let mut magic = [0u8; 20];
        magic[..4].copy_from_slice(b"\x7fELF");
        magic[4] = class;
        magic[5] = if big_endian { 2 } else { 1 };
        magic[6] = 1;
        let (etype, emachine) = if big_endian {
            (2u16.to_be_bytes(), machine.to_be_bytes())
        } else {
            (2u16.to_le_bytes(), machine.to_le_bytes())
        };
        magic[16..18].copy_from_slice(&etype);
        magic[18..20].copy_from_slice(&emachine);
        Some(magic)
    }

    /// The architecture of an ELF file whose first bytes are `head` (at least 20), or
    /// `None` when it is not ELF or not an architecture SIF knows.
    pub fn from_elf(head: &[u8]) -> Option<Arch> {
        let ident = head.get(..20)?;
        if &ident[..4] != b"\x7fELF" {
            return None;
        }
        let class = ident[4];
        let big_endian = match ident[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let raw = [ident[18], ident[19]];
        let machine = if big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        };
        ELF_FORMATS
            .iter()
            .find(|f| f.machine == machine && f.class == class && f.big_endian == big_endian)
            .map(|f| f.arch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

struct ElfFormat {
    arch: Arch,
    machine: u16,
    class: u8,
    big_endian: bool,
}

const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;

/// ELF machine, class and byte order of each architecture (Apptainer's table; its
/// first entry for an architecture is the one binfmt_misc magic is built from).
const ELF_FORMATS: &[ElfFormat] = &[
    elf(Arch::I386, 3, ELFCLASS32, false),
    elf(Arch::I386, 6, ELFCLASS32, false),
    elf(Arch::Amd64, 62, ELFCLASS64, false),
    elf(Arch::Arm, 40, ELFCLASS32, false),
    elf(Arch::Arm64, 183, ELFCLASS64, false),
    elf(Arch::S390x, 22, ELFCLASS64, true),
    elf(Arch::Ppc64, 21, ELFCLASS64, true),
    elf(Arch::Ppc64le, 21, ELFCLASS64, false),
    elf(Arch::Mips, 8, ELFCLASS32, true),
    elf(Arch::Mipsle, 8, ELFCLASS32, false),
    elf(Arch::Mips64, 8, ELFCLASS64, true),
    elf(Arch::Mips64le, 8, ELFCLASS64, false),
    elf(Arch::Riscv64, 243, ELFCLASS64, false),
    elf(Arch::Loong64, 258, ELFCLASS64, false),
];

const fn elf(arch: Arch, machine: u16, class: u8, big_endian: bool) -> ElfFormat {
    ElfFormat {
        arch,
        machine,
        class,
        big_endian,
    }
}

/// Whether the kernel can run `arch` executables through an enabled binfmt_misc entry
/// with the `F` (fix binary: interpreter opened at registration, so it works inside a
/// container) flag, as Apptainer requires. `binfmt_dir` is normally
/// [`BINFMT_MISC_DIR`]; anything unreadable counts as "no".
pub fn can_emulate(arch: Arch, binfmt_dir: &Path) -> bool {
    let Some(magic) = arch.elf_magic() else {
        return false;
    };
    let wanted: String = magic.iter().map(|b| format!("{b:02x}")).collect();
    match fs::read(binfmt_dir.join("status")) {
        Ok(status) if status == b"enabled\n" => {}
        _ => return false,
    }
    let Ok(entries) = fs::read_dir(binfmt_dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        fs::read_to_string(entry.path())
            .map(|text| binfmt_entry_matches(&text, &wanted))
            .unwrap_or(false)
    })
}

/// Whether one binfmt_misc entry's text is enabled, persistent and for `magic_hex`.
fn binfmt_entry_matches(text: &str, magic_hex: &str) -> bool {
    let (mut enabled, mut persistent, mut magic) = (false, false, None);
    for line in text.lines() {
        if line == "enabled" {
            enabled = true;
        } else if let Some(rest) = line.strip_prefix("magic ") {
            magic = Some(rest.trim());
        } else if let Some(rest) = line.strip_prefix("flags:") {
            persistent = rest.contains('F');
        }
    }
    enabled && persistent && magic == Some(magic_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for arch in Arch::all() {
            assert_eq!(Arch::from_code(arch.code()), arch);
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
        }
        assert_eq!(Arch::from_code(*b"02\0"), Arch::Amd64);
        assert_eq!(Arch::from_code(*b"00\0"), Arch::Unknown);
        assert_eq!(Arch::from_code(*b"02x"), Arch::Unknown);
        assert_eq!(Arch::Unknown.name(), "unknown");
        assert_eq!(Arch::from_name("x86_64"), Some(Arch::Amd64));
    }

    #[test]
    fn a_64bit_host_runs_its_32bit_sibling_but_not_the_reverse() {
        assert!(Arch::I386.runs_natively_on(Arch::Amd64));
        assert!(Arch::Arm.runs_natively_on(Arch::Arm64));
        assert!(!Arch::Amd64.runs_natively_on(Arch::I386));
        assert!(!Arch::Arm64.runs_natively_on(Arch::Amd64));
        assert!(Arch::Unknown.runs_natively_on(Arch::Amd64));
    }

    #[test]
    fn recognises_elf_headers() {
        let magic = Arch::Arm64.elf_magic().unwrap();
        assert_eq!(Arch::from_elf(&magic), Some(Arch::Arm64));
        let magic = Arch::S390x.elf_magic().unwrap();
        assert_eq!(Arch::from_elf(&magic), Some(Arch::S390x));
        assert_eq!(Arch::from_elf(b"#!/bin/sh\n0123456789"), None);
        assert_eq!(Arch::from_elf(b"\x7fELF"), None);
    }

    #[test]
    fn builds_the_binfmt_magic_apptainer_matches() {
        let hex: String = Arch::Arm64
            .elf_magic()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "7f454c460201010000000000000000000200b700");
    }

    #[test]
    fn emulation_needs_an_enabled_persistent_matching_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let magic: String = Arch::Arm64
            .elf_magic()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let entry = |flags: &str| {
            format!(
                "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: {flags}\noffset 0\nmagic {magic}\nmask fffffffffffffffcfffffffffffffffffeffffff\n"
            )
        };
        std::fs::write(dir.path().join("qemu-aarch64"), entry("OC")).unwrap();
        assert!(!can_emulate(Arch::Arm64, dir.path()));
        std::fs::write(dir.path().join("qemu-aarch64"), entry("OCF")).unwrap();
        assert!(can_emulate(Arch::Arm64, dir.path()));
        assert!(!can_emulate(Arch::Riscv64, dir.path()));
        std::fs::write(dir.path().join("status"), "disabled\n").unwrap();
        assert!(!can_emulate(Arch::Arm64, dir.path()));
    }
}
