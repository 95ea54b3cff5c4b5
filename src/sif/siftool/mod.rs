//! What the reference `siftool` prints for `header`, `list` and `info`, byte for byte
//! (its `pkg/siftool/info.go`). `dump` is [`crate::sif::Image::copy_object`].
//!
//! The printers return bytes, not `String`: names and launch scripts are raw bytes
//! that siftool prints as they are, valid UTF-8 or not.

pub mod gotime;
pub mod tabwriter;

use std::fmt::Write as _;

use self::tabwriter::TabWriter;
use super::arch::Arch;
use super::descriptor::{parse_oci_digest, Descriptor, Link};
use super::error::Problem;
use super::format::HashType;
use super::header::{format_uuid, Header};

/// `siftool header`: the global header.
pub fn header(h: &Header) -> Vec<u8> {
    let mut tw = TabWriter::new(1);
    let launch = h.launch_script();
    if !launch.is_empty() {
        tw.write(b"Launch Script:\t");
        tw.write(launch.strip_suffix(b"\n").unwrap_or(launch));
        tw.write(b"\n");
    }
    tw.write(b"Version:\t");
    tw.write(h.version());
    tw.write(b"\n");
    let arch = h.arch();
    if arch != Arch::Unknown {
        tw.write(format!("Primary Architecture:\t{arch}\n").as_bytes());
    }
    if let Some(id) = h.id() {
        tw.write(format!("ID:\t{}\n", format_uuid(&id)).as_bytes());
    }
    write_times(&mut tw, "", h.created, h.modified);
    let mut rest = String::new();
    let _ = writeln!(rest, "Descriptors Free:\t{}", h.descriptors_free);
    let _ = writeln!(rest, "Descriptors Total:\t{}", h.descriptors_total);
    let _ = writeln!(rest, "Descriptors Offset:\t{}", h.descriptors_offset);
    let _ = writeln!(
        rest,
        "Descriptors Size:\t{}",
        readable_size(h.descriptors_size)
    );
    let _ = writeln!(rest, "Data Offset:\t{}", h.data_offset);
    let _ = writeln!(rest, "Data Size:\t{}", readable_size(h.data_size));
    tw.write(rest.as_bytes());
    tw.finish()
}

/// `siftool list`: one line per used descriptor, in table order.
pub fn list<'a>(descriptors: impl IntoIterator<Item = &'a Descriptor>) -> Vec<u8> {
    let rule = "------------------------------------------------------------------------------\n";
    let mut out = String::new();
    out.push_str(rule);
    let _ = writeln!(
        out,
        "{:<4} {:<8} {:<8} {:<26} |TYPE",
        "ID", "|GROUP", "|LINK", "|SIF POSITION (start-end)"
    );
    out.push_str(rule);
    for d in descriptors {
        let _ = write!(out, "{:<4} ", d.id);
        match d.group_id() {
            0 => out.push_str("|NONE    "),
            id => {
                let _ = write!(out, "|{id:<7} ");
            }
        }
        match d.link() {
            Link::None => out.push_str("|NONE    "),
            Link::Group(id) => {
                let _ = write!(out, "|{id:<3} (G) ");
            }
            Link::Object(id) => {
                let _ = write!(out, "|{id:<7} ");
            }
        }
        // Go adds the int64s with wrap-around.
        let position = format!("|{}-{} ", d.offset, d.offset.wrapping_add(d.size));
        let _ = write!(out, "{position:<26} ");
        out.push_str(&list_type(d));
    }
    out.into_bytes()
}

/// The TYPE column and the newline; like siftool, nothing at all (not even the
/// newline) for a signature whose hash type is unknown.
fn list_type(d: &Descriptor) -> String {
    let dt = d.data_type;
    if let Some(p) = d.partition() {
        return format!("|{dt} ({}/{}/{})\n", p.fs_type, p.part_type, p.arch);
    }
    if let Some(s) = d.signature() {
        return match s.hash_type {
            HashType::Unknown(_) => String::new(),
            ht => format!("|{dt} ({ht})\n"),
        };
    }
    if let Some((format, message)) = d.crypto_message() {
        return format!("|{dt} ({format}/{message})\n");
    }
    if let Some(format) = d.sbom_format() {
        return format!("|{dt} ({format})\n");
    }
    format!("|{dt}\n")
}

/// `siftool info ID`: every field of one descriptor. Fails, printing nothing, where
/// siftool fails: an unknown signature hash type or an invalid OCI digest.
pub fn info(d: &Descriptor) -> Result<Vec<u8>, Problem> {
    let specific = type_specific_info(d)?;
    let mut tw = TabWriter::new(2);
    let mut common = String::new();
    let _ = writeln!(common, "\tData Type:\t{}", d.data_type);
    let _ = writeln!(common, "\tID:\t{}", d.id);
    match d.group_id() {
        0 => common.push_str("\tGroup ID:\tNONE\n"),
        id => {
            let _ = writeln!(common, "\tGroup ID:\t{id}");
        }
    }
    match d.link() {
        Link::None => common.push_str("\tLinked ID:\tNONE\n"),
        Link::Group(id) => {
            let _ = writeln!(common, "\tLinked ID:\t{id} (G)");
        }
        Link::Object(id) => {
            let _ = writeln!(common, "\tLinked ID:\t{id}");
        }
    }
    let _ = writeln!(common, "\tOffset:\t{}", d.offset);
    let _ = writeln!(common, "\tSize:\t{}", d.size);
    tw.write(common.as_bytes());
    write_times(&mut tw, "\t", d.created, d.modified);
    let name = d.name();
    if !name.is_empty() {
        tw.write(b"\tName:\t");
        tw.write(name);
        tw.write(b"\n");
    }
    tw.write(specific.as_bytes());
    Ok(tw.finish())
}

/// The lines `info` adds for each data type.
fn type_specific_info(d: &Descriptor) -> Result<String, Problem> {
    let mut out = String::new();
    if let Some(p) = d.partition() {
        let _ = writeln!(out, "\tFilesystem Type:\t{}", p.fs_type);
        let _ = writeln!(out, "\tPartition Type:\t{}", p.part_type);
        let _ = writeln!(out, "\tArchitecture:\t{}", p.arch);
    } else if let Some(s) = d.signature() {
        if let HashType::Unknown(value) = s.hash_type {
            return Err(Problem::UnknownHashType { id: d.id, value });
        }
        let _ = writeln!(out, "\tHash Type:\t{}", s.hash_type);
        if let Some(fp) = s.fingerprint() {
            let hex: String = fp.iter().map(|b| format!("{b:02X}")).collect();
            let _ = writeln!(out, "\tEntity:\t{hex}");
        }
    } else if let Some((format, message)) = d.crypto_message() {
        let _ = writeln!(out, "\tFormat Type:\t{format}");
        let _ = writeln!(out, "\tMessage Type:\t{message}");
    } else if let Some(format) = d.sbom_format() {
        let _ = writeln!(out, "\tFormat:\t{format}");
    } else if let Some(raw) = d.oci_digest_raw() {
        let digest = parse_oci_digest(raw).ok_or_else(|| Problem::BadOciDigest {
            id: d.id,
            digest: raw.to_vec(),
        })?;
        let _ = writeln!(out, "\tDigest:\t{digest}");
    }
    Ok(out)
}

/// "Created At" and "Modified At", each unless it is Go's zero time.
fn write_times(tw: &mut TabWriter, indent: &str, created: i64, modified: i64) {
    for (label, sec) in [("Created At", created), ("Modified At", modified)] {
        if !gotime::is_zero(sec) {
            tw.write(format!("{indent}{label}:\t{}\n", gotime::format_utc(sec)).as_bytes());
        }
    }
}

/// siftool's `readableSize`: bytes below 1 KiB, else the nearest whole unit.
pub fn readable_size(size: i64) -> String {
    if -1024 < size && size < 1024 {
        return format!("{size} B");
    }
    let units = b"KMGTPE";
    let (mut div, mut exp) = (1024u64, 0usize);
    let mut n = size / 1024;
    while n <= -1024 || 1024 <= n {
        div *= 1024;
        exp += 1;
        n /= 1024;
    }
    let value = (size as f64 / div as f64).round();
    format!("{value:.0} {}iB", char::from(units[exp]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_sizes_round_like_go() {
        assert_eq!(readable_size(0), "0 B");
        assert_eq!(readable_size(1023), "1023 B");
        assert_eq!(readable_size(-1023), "-1023 B");
        assert_eq!(readable_size(1024), "1 KiB");
        assert_eq!(readable_size(28080), "27 KiB");
        assert_eq!(readable_size(272_825), "266 KiB");
        assert_eq!(readable_size(1536), "2 KiB");
        assert_eq!(readable_size(1 << 30), "1 GiB");
        assert_eq!(readable_size(i64::MAX), "8 EiB");
        assert_eq!(readable_size(i64::MIN), "-8 EiB");
        assert_eq!(readable_size(-1024), "-1 KiB");
    }
}
