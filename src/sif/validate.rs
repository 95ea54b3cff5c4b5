//! The structural checks that keep every read and mount inside the image.
//!
//! Pure functions of the parsed header, the used descriptors and the file's length.
//! [`check_header`] is what must hold before the descriptor table can be read at all;
//! [`check_layout`] is everything else: counts that agree, a data section inside the
//! file, and objects inside the data section that do not overlap. A file that passes
//! both cannot make berth read or mount a byte outside the object it asked for.

use super::descriptor::Descriptor;
use super::error::{Field, Problem, Region};
use super::format::{DESCRIPTOR_LEN, HEADER_LEN, MAGIC, VERSION};
use super::header::Header;

/// The most descriptor slots berth reads (Apptainer writes 48). It bounds the table
/// read when an image is opened to about 2.4 MB.
pub const MAX_DESCRIPTORS: i64 = 4096;

/// A byte range `[start, end)` of the file.
#[derive(Debug, Clone, Copy)]
struct Span {
    what: Region,
    start: i64,
    end: i64,
}

impl Span {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn overlaps(&self, other: &Span) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    fn overlap_problem(&self, other: &Span) -> Problem {
        Problem::Overlap {
            what: self.what,
            start: self.start,
            end: self.end,
            other: other.what,
            other_start: other.start,
            other_end: other.end,
        }
    }
}

/// What must hold before the descriptor table is read: magic, version, a sane count,
/// and a table inside the file, after the header.
pub fn check_header(header: &Header, file_len: u64) -> Result<(), Problem> {
    if header.magic != MAGIC {
        return Err(Problem::BadMagic {
            found: header.magic,
        });
    }
    if header.version != VERSION {
        return Err(Problem::BadVersion {
            found: header.version,
        });
    }
    let total = non_negative("descriptors total", header.descriptors_total)?;
    if total > MAX_DESCRIPTORS {
        return Err(Problem::TooManyDescriptors {
            total,
            max: MAX_DESCRIPTORS,
        });
    }
    let offset = non_negative("descriptors offset", header.descriptors_offset)?;
    let size = non_negative("descriptors size", header.descriptors_size)?;
    let expected = total * DESCRIPTOR_LEN as i64; // no overflow: total <= MAX_DESCRIPTORS
    if size != expected {
        return Err(Problem::DescriptorSizeMismatch {
            size,
            total,
            expected,
        });
    }
    let table = span(Region::DescriptorTable, offset, size)?;
    inside_file(&table, file_len)?;
    let header_span = Span {
        what: Region::Header,
        start: 0,
        end: HEADER_LEN as i64,
    };
    if table.overlaps(&header_span) {
        return Err(table.overlap_problem(&header_span));
    }
    Ok(())
}

/// Everything else: the free count, the data section, and every used object.
///
/// `used` are the descriptors in use, in table order; `check_header` must have passed.
pub fn check_layout(header: &Header, used: &[Descriptor], file_len: u64) -> Result<(), Problem> {
    check_free_count(header, used.len())?;
    let data = check_data_section(header, file_len)?;
    check_ids(used)?;
    let mut objects = Vec::with_capacity(used.len());
    for d in used {
        let object = check_object(d, &data)?;
        if !object.is_empty() {
            objects.push(object);
        }
    }
    check_no_overlaps(&mut objects)
}

fn check_free_count(header: &Header, used: usize) -> Result<(), Problem> {
    let free = non_negative("descriptors free", header.descriptors_free)?;
    let total = header.descriptors_total;
    let used = i64::try_from(used).unwrap_or(i64::MAX);
    if free != total.saturating_sub(used) {
        return Err(Problem::FreeCountMismatch { free, total, used });
    }
    Ok(())
}

/// The data section, checked to lie inside the file and clear of header and table.
fn check_data_section(header: &Header, file_len: u64) -> Result<Span, Problem> {
    let offset = non_negative("data offset", header.data_offset)?;
    let size = non_negative("data size", header.data_size)?;
    let data = span(Region::DataSection, offset, size)?;
    inside_file(&data, file_len)?;
    let header_span = Span {
        what: Region::Header,
        start: 0,
        end: HEADER_LEN as i64,
    };
    let table = Span {
        what: Region::DescriptorTable,
        start: header.descriptors_offset,
        end: header
            .descriptors_offset
            .saturating_add(header.descriptors_size),
    };
    for other in [header_span, table] {
        if data.overlaps(&other) {
            return Err(data.overlap_problem(&other));
        }
    }
    Ok(data)
}

fn check_ids(used: &[Descriptor]) -> Result<(), Problem> {
    let mut ids: Vec<(u32, usize)> = Vec::with_capacity(used.len());
    for d in used {
        if d.id == 0 {
            return Err(Problem::ZeroId { slot: d.slot });
        }
        ids.push((d.id, d.slot));
    }
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(Problem::DuplicateId {
            id: w[0].0,
            first: w[0].1,
            second: w[1].1,
        }),
        None => Ok(()),
    }
}

/// The object's span, checked to lie inside the data section.
fn check_object(d: &Descriptor, data: &Span) -> Result<Span, Problem> {
    let field = |field| Field::Object { id: d.id, field };
    if d.offset < 0 {
        return Err(Problem::Negative {
            field: field("offset"),
            value: d.offset,
        });
    }
    if d.size < 0 {
        return Err(Problem::Negative {
            field: field("size"),
            value: d.size,
        });
    }
    let object = span(Region::Object { id: d.id }, d.offset, d.size)?;
    if object.start < data.start || object.end > data.end {
        return Err(Problem::OutsideData {
            what: object.what,
            start: object.start,
            end: object.end,
            data_start: data.start,
            data_end: data.end,
        });
    }
    Ok(object)
}

/// Sorts `objects` (all non-empty) by offset and reports the first overlap.
fn check_no_overlaps(objects: &mut [Span]) -> Result<(), Problem> {
    objects.sort_unstable_by_key(|s| (s.start, s.end));
    match objects.windows(2).find(|w| w[0].overlaps(&w[1])) {
        Some(w) => Err(w[1].overlap_problem(&w[0])),
        None => Ok(()),
    }
}

fn non_negative(name: &'static str, value: i64) -> Result<i64, Problem> {
    if value < 0 {
        return Err(Problem::Negative {
            field: Field::Header(name),
            value,
        });
    }
    Ok(value)
}

/// `[offset, offset + size)`, or an overflow problem.
fn span(what: Region, offset: i64, size: i64) -> Result<Span, Problem> {
    match offset.checked_add(size) {
        Some(end) => Ok(Span {
            what,
            start: offset,
            end,
        }),
        None => Err(Problem::Overflow { what, offset, size }),
    }
}

fn inside_file(s: &Span, file_len: u64) -> Result<(), Problem> {
    // Spans are non-negative here, so the cast is exact.
    if s.end as u64 > file_len {
        return Err(Problem::PastEnd {
            what: s.what,
            start: s.start,
            end: s.end,
            len: file_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sif::arch::Arch;
    use crate::sif::descriptor::partition_extra;
    use crate::sif::format::{DataType, FsType, PartType, EXTRA_LEN, GROUP_MASK, NAME_LEN};

    fn header(used: i64, data_size: i64) -> Header {
        let mut h = Header::empty(48, 4096);
        h.descriptors_free = 48 - used;
        h.data_size = data_size;
        h
    }

    fn object(slot: usize, id: u32, offset: i64, size: i64) -> Descriptor {
        Descriptor {
            slot,
            data_type: DataType::Partition,
            used: true,
            id,
            raw_group_id: GROUP_MASK | 1,
            raw_linked_id: 0,
            offset,
            size,
            size_with_padding: size,
            created: 0,
            modified: 0,
            uid: 0,
            gid: 0,
            name: [0; NAME_LEN],
            extra: partition_extra(FsType::Squashfs, PartType::PrimarySystem, Arch::Amd64),
        }
    }

    const DATA: i64 = 32176;

    #[test]
    fn accepts_a_well_formed_layout() {
        let h = header(2, 8192);
        let used = [object(0, 1, DATA, 100), object(1, 2, DATA + 4096, 4096)];
        assert_eq!(check_header(&h, (DATA + 8192) as u64), Ok(()));
        assert_eq!(check_layout(&h, &used, (DATA + 8192) as u64), Ok(()));
    }

    #[test]
    fn rejects_a_table_past_the_end() {
        let h = header(0, 0);
        assert!(matches!(
            check_header(&h, 30_000),
            Err(Problem::PastEnd {
                what: Region::DescriptorTable,
                end: 32176,
                len: 30_000,
                ..
            })
        ));
    }

    #[test]
    fn rejects_a_table_over_the_header() {
        let mut h = header(0, 0);
        h.descriptors_offset = 64;
        h.data_offset = 64 + 28080;
        assert!(matches!(
            check_header(&h, 1 << 20),
            Err(Problem::Overlap {
                what: Region::DescriptorTable,
                other: Region::Header,
                ..
            })
        ));
    }

    #[test]
    fn rejects_absurd_and_disagreeing_counts() {
        let mut h = header(0, 0);
        h.descriptors_total = i64::MAX;
        assert!(matches!(
            check_header(&h, 1 << 20),
            Err(Problem::TooManyDescriptors { .. })
        ));
        let mut h = header(0, 0);
        h.descriptors_total = -1;
        assert!(matches!(
            check_header(&h, 1 << 20),
            Err(Problem::Negative { value: -1, .. })
        ));
        let mut h = header(0, 0);
        h.descriptors_size = 585;
        assert!(matches!(
            check_header(&h, 1 << 20),
            Err(Problem::DescriptorSizeMismatch {
                size: 585,
                expected: 28080,
                ..
            })
        ));
        let h = header(0, 100);
        let used = [object(0, 1, DATA, 100)];
        assert!(matches!(
            check_layout(&h, &used, (DATA + 100) as u64),
            Err(Problem::FreeCountMismatch {
                free: 48,
                used: 1,
                ..
            })
        ));
    }

    #[test]
    fn rejects_offsets_that_overflow() {
        let h = header(1, 100);
        let used = [object(0, 1, i64::MAX - 10, 100)];
        assert!(matches!(
            check_layout(&h, &used, (DATA + 100) as u64),
            Err(Problem::Overflow { .. })
        ));
    }

    #[test]
    fn rejects_objects_outside_the_data_section() {
        let h = header(1, 100);
        let used = [object(0, 1, DATA + 50, 100)];
        assert!(matches!(
            check_layout(&h, &used, (DATA + 100) as u64),
            Err(Problem::OutsideData {
                what: Region::Object { id: 1 },
                ..
            })
        ));
        let used = [object(0, 1, 100, 10)];
        assert!(matches!(
            check_layout(&h, &used, (DATA + 100) as u64),
            Err(Problem::OutsideData { .. })
        ));
    }

    #[test]
    fn rejects_overlapping_objects_in_any_order() {
        let h = header(2, 8192);
        let used = [object(0, 1, DATA + 4000, 200), object(1, 2, DATA, 4001)];
        assert!(matches!(
            check_layout(&h, &used, (DATA + 8192) as u64),
            Err(Problem::Overlap {
                what: Region::Object { id: 1 },
                other: Region::Object { id: 2 },
                ..
            })
        ));
    }

    #[test]
    fn empty_objects_overlap_nothing() {
        let h = header(2, 100);
        let used = [object(0, 1, DATA, 0), object(1, 2, DATA, 100)];
        assert_eq!(check_layout(&h, &used, (DATA + 100) as u64), Ok(()));
    }

    #[test]
    fn rejects_zero_and_duplicate_ids() {
        let h = header(2, 200);
        let used = [object(0, 1, DATA, 100), object(1, 0, DATA + 100, 100)];
        assert_eq!(
            check_layout(&h, &used, (DATA + 200) as u64),
            Err(Problem::ZeroId { slot: 1 })
        );
        let used = [object(0, 7, DATA, 100), object(3, 7, DATA + 100, 100)];
        assert_eq!(
            check_layout(&h, &used, (DATA + 200) as u64),
            Err(Problem::DuplicateId {
                id: 7,
                first: 0,
                second: 3
            })
        );
    }

    #[test]
    fn rejects_a_data_section_over_the_table() {
        let mut h = header(0, 100);
        h.data_offset = 5000;
        assert!(matches!(
            check_layout(&h, &[], 1 << 20),
            Err(Problem::Overlap {
                what: Region::DataSection,
                other: Region::DescriptorTable,
                ..
            })
        ));
    }

    #[test]
    fn extra_len_is_what_the_format_says() {
        assert_eq!(EXTRA_LEN + NAME_LEN + 73, DESCRIPTOR_LEN);
    }
}
