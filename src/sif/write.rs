//! Writing a SIF file from data objects, laid out as the reference implementation
//! (`sif.CreateContainer`, which `apptainer build` calls) lays it out.
//!
//! Header at 0, descriptor table at 4096 (48 slots), data from the end of the table
//! (32176). Objects follow each other in the order given, each at the first offset
//! that satisfies its alignment (4096 for partitions, none otherwise); the descriptor
//! records `size_with_padding` = padding before the object + its size. Object `i` gets
//! id `i + 1`; a primary system partition sets the header's architecture.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::arch::Arch;
use super::descriptor::{partition_extra, Descriptor, Link, PartitionMeta};
use super::error::SifError;
use super::format::{
    DataType, FsType, PartType, DEFAULT_DESCRIPTORS_OFFSET, DEFAULT_DESCRIPTOR_CAPACITY,
    DEFAULT_GROUP, DEFAULT_LAUNCH_SCRIPT, DESCRIPTOR_LEN, EXTRA_LEN, GO_ZERO_TIME, GROUP_MASK,
    LAUNCH_SCRIPT_LEN, NAME_LEN, PARTITION_ALIGNMENT,
};
use super::header::Header;
use super::Result;

/// Where an object's bytes come from.
#[derive(Debug)]
pub enum Source {
    Bytes(Vec<u8>),
    /// Read from its current position to its end (copied in the kernel where it can).
    File(File),
}

/// One data object to write.
#[derive(Debug)]
pub struct ObjectInput {
    pub data_type: DataType,
    pub source: Source,
    /// Group id, 0 for none.
    pub group_id: u32,
    pub link: Link,
    /// Alignment of the object's offset in the file, 0 or 1 for none.
    pub alignment: u64,
    pub name: Vec<u8>,
    pub extra: [u8; EXTRA_LEN],
    /// Creation time; the image's time when `None`.
    pub time: Option<i64>,
}

impl ObjectInput {
    /// An object of `data_type` in the default group, aligned as the reference
    /// implementation aligns it (partitions to 4096 bytes).
    pub fn new(data_type: DataType, source: Source) -> ObjectInput {
        let alignment = if data_type == DataType::Partition {
            PARTITION_ALIGNMENT
        } else {
            0
        };
        ObjectInput {
            data_type,
            source,
            group_id: DEFAULT_GROUP,
            link: Link::None,
            alignment,
            name: Vec::new(),
            extra: [0; EXTRA_LEN],
            time: None,
        }
    }

    /// An object holding `bytes`.
    pub fn bytes(data_type: DataType, bytes: impl Into<Vec<u8>>) -> ObjectInput {
        ObjectInput::new(data_type, Source::Bytes(bytes.into()))
    }

    /// A partition read from `file`.
    pub fn partition(file: File, fs_type: FsType, part_type: PartType, arch: Arch) -> ObjectInput {
        ObjectInput::new(DataType::Partition, Source::File(file))
            .with_extra(partition_extra(fs_type, part_type, arch))
    }

    pub fn with_name(mut self, name: impl Into<Vec<u8>>) -> ObjectInput {
        self.name = name.into();
        self
    }

    pub fn with_group(mut self, group_id: u32) -> ObjectInput {
        self.group_id = group_id;
        self
    }

    pub fn with_link(mut self, link: Link) -> ObjectInput {
        self.link = link;
        self
    }

    pub fn with_alignment(mut self, alignment: u64) -> ObjectInput {
        self.alignment = alignment;
        self
    }

    pub fn with_extra(mut self, extra: [u8; EXTRA_LEN]) -> ObjectInput {
        self.extra = extra;
        self
    }

    pub fn with_time(mut self, time: i64) -> ObjectInput {
        self.time = Some(time);
        self
    }
}

/// Image-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// At most 31 bytes.
    pub launch_script: Vec<u8>,
    /// All zero for none.
    pub id: [u8; 16],
    /// Creation (and modification) time of the image and its objects, Unix seconds.
    pub time: i64,
    pub descriptor_capacity: i64,
    pub descriptors_offset: i64,
}

impl CreateOptions {
    /// What `apptainer build` uses: its launch script, a random UUID, the current time.
    pub fn new() -> CreateOptions {
        CreateOptions {
            id: random_uuid(),
            time: now(),
            ..CreateOptions::deterministic()
        }
    }

    /// Reproducible: no UUID and Go's zero time (siftool prints neither), as
    /// `apptainer build` does when `SOURCE_DATE_EPOCH` is set.
    pub fn deterministic() -> CreateOptions {
        CreateOptions {
            launch_script: DEFAULT_LAUNCH_SCRIPT.to_vec(),
            id: [0; 16],
            time: GO_ZERO_TIME,
            descriptor_capacity: DEFAULT_DESCRIPTOR_CAPACITY,
            descriptors_offset: DEFAULT_DESCRIPTORS_OFFSET,
        }
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions::new()
    }
}

/// Creates (or replaces) the SIF file at `path` (mode 0755, like the reference
/// implementation: the launch script makes it executable) holding `objects`.
pub fn create(path: &Path, opts: &CreateOptions, objects: Vec<ObjectInput>) -> Result<Header> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .map_err(|e| SifError::io(path, "create the image", e))?;
    let result = write_to(&mut file, path, opts, objects);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Writes an image holding `objects` into `out`, an empty file; `path` names it in
/// messages.
pub fn write_to(
    out: &mut File,
    path: &Path,
    opts: &CreateOptions,
    objects: Vec<ObjectInput>,
) -> Result<Header> {
    let mut header = new_header(path, opts)?;
    let capacity = usize::try_from(opts.descriptor_capacity).unwrap_or(0);
    if objects.len() > capacity {
        return Err(SifError::input(
            path,
            format!(
                "{} objects do not fit in {capacity} descriptors",
                objects.len()
            ),
        ));
    }
    let mut descriptors = Vec::with_capacity(objects.len());
    for (i, object) in objects.into_iter().enumerate() {
        let d = write_object(out, path, &mut header, &descriptors, i, object, opts.time)?;
        descriptors.push(d);
    }
    let mut table = vec![0u8; capacity * DESCRIPTOR_LEN];
    for d in &descriptors {
        let at = d.slot * DESCRIPTOR_LEN;
        table[at..at + DESCRIPTOR_LEN].copy_from_slice(&d.encode());
    }
    let write = |bytes: &[u8], offset: u64| {
        out.write_all_at(bytes, offset)
            .map_err(|e| SifError::io(path, "write the image", e))
    };
    write(&table, opts.descriptors_offset as u64)?;
    write(&header.encode(), 0)?;
    let end = (header.data_offset + header.data_size) as u64;
    let len = out
        .metadata()
        .map_err(|e| SifError::io(path, "write the image", e))?
        .len();
    if len < end {
        out.set_len(end)
            .map_err(|e| SifError::io(path, "write the image", e))?;
    }
    Ok(header)
}

fn new_header(path: &Path, opts: &CreateOptions) -> Result<Header> {
    if opts.launch_script.len() >= LAUNCH_SCRIPT_LEN {
        return Err(SifError::input(
            path,
            format!(
                "launch script is {} bytes, at most {} fit",
                opts.launch_script.len(),
                LAUNCH_SCRIPT_LEN - 1
            ),
        ));
    }
    if !(0..i64::from(u32::MAX)).contains(&opts.descriptor_capacity)
        || opts.descriptors_offset < super::format::HEADER_LEN as i64
    {
        return Err(SifError::input(
            path,
            format!(
                "descriptor capacity {} at offset {} is not possible",
                opts.descriptor_capacity, opts.descriptors_offset
            ),
        ));
    }
    let mut header = Header::empty(opts.descriptor_capacity, opts.descriptors_offset);
    header.launch_script[..opts.launch_script.len()].copy_from_slice(&opts.launch_script);
    header.id = opts.id;
    header.created = opts.time;
    header.modified = opts.time;
    Ok(header)
}

/// Writes object `index` after the objects in `written`, and returns its descriptor.
fn write_object(
    out: &mut File,
    path: &Path,
    header: &mut Header,
    written: &[Descriptor],
    index: usize,
    object: ObjectInput,
    image_time: i64,
) -> Result<Descriptor> {
    if object.name.len() > NAME_LEN {
        return Err(SifError::input(
            path,
            format!(
                "object name is {} bytes, at most {NAME_LEN} fit",
                object.name.len()
            ),
        ));
    }
    if let Some(meta) = primary_meta(&object) {
        if written
            .iter()
            .any(|d| d.is_partition_of_type(PartType::PrimarySystem))
        {
            return Err(SifError::input(
                path,
                "an image can hold only one primary system partition",
            ));
        }
        header.arch = meta.code();
    }
    let data_end = written
        .iter()
        .filter_map(Descriptor::end)
        .fold(header.data_offset, i64::max);
    header.data_size = data_end - header.data_offset;
    let unaligned = data_end as u64;
    let offset = match object.alignment {
        0 | 1 => unaligned,
        a => unaligned.div_ceil(a).saturating_mul(a),
    };
    let size = copy_data(out, offset, object.source)
        .map_err(|e| SifError::io(path, "write an object", e))?;
    let time = object.time.unwrap_or(image_time);
    let mut name = [0u8; NAME_LEN];
    name[..object.name.len()].copy_from_slice(&object.name);
    let d = Descriptor {
        slot: index,
        data_type: object.data_type,
        used: true,
        id: u32::try_from(index + 1).unwrap_or(u32::MAX),
        raw_group_id: object.group_id | GROUP_MASK,
        raw_linked_id: match object.link {
            Link::None => 0,
            Link::Object(id) => id,
            Link::Group(id) => id | GROUP_MASK,
        },
        offset: offset as i64,
        size: size as i64,
        size_with_padding: (offset - unaligned + size) as i64,
        created: time,
        modified: time,
        uid: 0,
        gid: 0,
        name,
        extra: object.extra,
    };
    header.descriptors_free -= 1;
    header.data_size += d.size_with_padding;
    Ok(d)
}

/// The architecture of `object` if it is a primary system partition.
fn primary_meta(object: &ObjectInput) -> Option<Arch> {
    if object.data_type != DataType::Partition {
        return None;
    }
    let meta = PartitionMeta::from_extra(&object.extra);
    (meta.part_type == PartType::PrimarySystem).then_some(meta.arch)
}

/// Writes `source` at `offset`; returns the number of bytes.
fn copy_data(out: &mut File, offset: u64, source: Source) -> io::Result<u64> {
    match source {
        Source::Bytes(bytes) => {
            out.write_all_at(&bytes, offset)?;
            Ok(bytes.len() as u64)
        }
        Source::File(mut file) => {
            out.seek(SeekFrom::Start(offset))?;
            io::copy(&mut file, out)
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A random (version 4) UUID.
pub fn random_uuid() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `id.len()` bytes into `id`, which we own. With
    // flags 0 it blocks only until the kernel's pool is initialised at boot.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        // Fall back to the clock and pid: unique enough for an image id.
        let seed = (now() as u128) << 64 | u128::from(std::process::id());
        id = seed.to_le_bytes();
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}
