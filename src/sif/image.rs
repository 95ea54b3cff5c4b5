//! An opened SIF image: header and descriptors read, structure validated, root
//! partition located, and the queries the container code and the CLI need.
//!
//! Opening reads three things with positioned reads: the 128-byte header, the
//! descriptor table (27 KiB for the usual 48 slots) and the root partition's 96-byte
//! squashfs superblock. It never reads object data, so its cost does not depend on the
//! image's size. The image keeps the `File` it was given: berth opens the image with
//! the job user's rights and mounts from that same descriptor.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::arch::{self, Arch};
use super::descriptor::{Descriptor, Link};
use super::error::{Problem, SifError};
use super::format::{DataType, FsType, PartType, DESCRIPTOR_LEN, HEADER_LEN};
use super::header::Header;
use super::squashfs::{Superblock, SUPERBLOCK_LEN};
use super::validate;
use super::Result;

/// Something an image can be read from with positioned reads.
pub trait ReadAt {
    /// Fills `buf` from byte `offset`, or fails (`UnexpectedEof` past the end).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// The number of bytes there are to read.
    fn size(&self) -> io::Result<u64>;

    /// What to call this source in messages when no path was given.
    fn describe(&self) -> PathBuf {
        PathBuf::from("<memory>")
    }
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        let meta = self.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(meta.len())
    }

    fn describe(&self) -> PathBuf {
        let fd = self.as_raw_fd();
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .unwrap_or_else(|_| PathBuf::from(format!("file descriptor {fd}")))
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }

    fn describe(&self) -> PathBuf {
        (**self).describe()
    }
}

/// A partition, located and bounds-checked: what the container code mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Object id of the partition.
    pub id: u32,
    /// Group the partition is in (0 for none).
    pub group_id: u32,
    /// Absolute offset of the partition in the image file (the loop device's offset).
    pub offset: u64,
    /// Size in bytes (the loop device's size limit).
    pub size: u64,
    pub fs_type: FsType,
    pub part_type: PartType,
    pub arch: Arch,
}

/// What opening found about the primary system partition.
#[derive(Debug, Clone)]
enum Root {
    None,
    Multiple(Vec<u32>),
    /// The partition, and its first 96 bytes if it is a squashfs at least that big.
    One {
        partition: Partition,
        superblock: Option<[u8; SUPERBLOCK_LEN]>,
    },
}

/// An opened SIF image.
#[derive(Debug)]
pub struct Image<R: ReadAt = File> {
    source: R,
    path: Option<PathBuf>,
    file_len: u64,
    header: Header,
    /// The descriptors in use, in table order.
    descriptors: Vec<Descriptor>,
    /// Set when the structure has been validated.
    root: Option<Root>,
}

impl Image<File> {
    /// Opens the image at `path` read-only and validates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Image<File>> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| SifError::io(path, "open the image", e))?;
        Image::read(file, Some(path.to_path_buf()))
    }

    /// Validates the image in `file`, which the caller opened (berth opens images with
    /// the job user's rights). Messages name the file by its `/proc/self/fd` link.
    pub fn from_file(file: File) -> Result<Image<File>> {
        Image::read(file, None)
    }

    /// Like [`Image::from_file`], with the path to use in messages.
    pub fn from_file_named(file: File, path: impl Into<PathBuf>) -> Result<Image<File>> {
        Image::read(file, Some(path.into()))
    }

    /// The image file (to set up a loop device from).
    pub fn file(&self) -> &File {
        &self.source
    }

    /// Gives the image file back.
    pub fn into_file(self) -> File {
        self.source
    }
}

impl<R: ReadAt> Image<R> {
    /// Reads and validates the image in `source`; `path` names it in messages.
    pub fn read(source: R, path: Option<PathBuf>) -> Result<Image<R>> {
        let mut image = Image::read_unvalidated(source, path)?;
        image.validate()?;
        Ok(image)
    }

    /// Reads the header and the descriptors with only the checks needed to read them
    /// (magic, version, a table inside the file), as `siftool` does: enough to print an
    /// image that berth would refuse to run. [`Image::validate`] does the rest.
    pub fn read_unvalidated(source: R, path: Option<PathBuf>) -> Result<Image<R>> {
        let mut image = Image {
            source,
            path,
            file_len: 0,
            header: Header::parse(&[0; HEADER_LEN]),
            descriptors: Vec::new(),
            root: None,
        };
        image.file_len = image
            .source
            .size()
            .map_err(|e| image.io_error("read the image's size", e))?;
        if image.file_len < HEADER_LEN as u64 {
            return Err(image.problem(Problem::HeaderTruncated {
                len: image.file_len,
            }));
        }
        let mut raw = [0u8; HEADER_LEN];
        image.read_at(&mut raw, 0, "read the SIF header")?;
        image.header = Header::parse(&raw);
        validate::check_header(&image.header, image.file_len).map_err(|p| image.problem(p))?;
        image.descriptors = image.read_descriptors()?;
        Ok(image)
    }

    /// Runs the structural checks (see [`validate`]) if they have not run yet, and
    /// locates the primary system partition.
    pub fn validate(&mut self) -> Result<()> {
        if self.root.is_some() {
            return Ok(());
        }
        validate::check_layout(&self.header, &self.descriptors, self.file_len)
            .map_err(|p| self.problem(p))?;
        self.root = Some(self.find_root()?);
        Ok(())
    }

    fn read_descriptors(&self) -> Result<Vec<Descriptor>> {
        // check_header bounded the table to MAX_DESCRIPTORS slots inside the file.
        let total = usize::try_from(self.header.descriptors_total).unwrap_or(0);
        let mut table = vec![0u8; total * DESCRIPTOR_LEN];
        self.read_at(
            &mut table,
            self.header.descriptors_offset as u64,
            "read the descriptor table",
        )?;
        let (slots, _) = table.as_chunks::<DESCRIPTOR_LEN>();
        Ok(slots
            .iter()
            .enumerate()
            .filter(|(_, raw)| Descriptor::is_used(raw))
            .map(|(slot, raw)| Descriptor::parse(raw, slot))
            .collect())
    }

    /// Finds the one used partition of type *System, as Apptainer does, and reads its
    /// superblock. Zero or several are recorded, not errors: the image is still valid
    /// (e.g. a data-only image), just not runnable.
    fn find_root(&self) -> Result<Root> {
        let primaries: Vec<Partition> = self
            .descriptors
            .iter()
            .filter_map(partition_of)
            .filter(|p| p.part_type == PartType::PrimarySystem)
            .collect();
        let partition = match primaries.as_slice() {
            [] => return Ok(Root::None),
            [one] => *one,
            several => return Ok(Root::Multiple(several.iter().map(|p| p.id).collect())),
        };
        let mut superblock = None;
        if partition.fs_type == FsType::Squashfs && partition.size >= SUPERBLOCK_LEN as u64 {
            let mut raw = [0u8; SUPERBLOCK_LEN];
            self.read_at(&mut raw, partition.offset, "read the squashfs superblock")?;
            superblock = Some(raw);
        }
        Ok(Root::One {
            partition,
            superblock,
        })
    }

    /// The path used in messages.
    pub fn path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| self.source.describe())
    }

    /// The source the image is read from.
    pub fn source(&self) -> &R {
        &self.source
    }

    /// The size of the image file.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The global header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The descriptors in use, in table order.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// The object with `id`, with siftool's rules: no objects at all, id 0, and an id
    /// that is not there are errors.
    pub fn descriptor(&self, id: u32) -> Result<&Descriptor> {
        if self.header.descriptors_free == self.header.descriptors_total {
            return Err(self.problem(Problem::NoObjects));
        }
        if id == 0 {
            return Err(self.problem(Problem::InvalidObjectId));
        }
        self.descriptors
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| self.problem(Problem::NoSuchObject { id }))
    }

    /// The objects of data type `data_type`.
    pub fn objects_of_type(&self, data_type: DataType) -> impl Iterator<Item = &Descriptor> {
        self.descriptors
            .iter()
            .filter(move |d| d.data_type == data_type)
    }

    /// The objects in group `group_id`.
    pub fn group(&self, group_id: u32) -> impl Iterator<Item = &Descriptor> {
        self.descriptors
            .iter()
            .filter(move |d| d.group_id() == group_id)
    }

    /// The ids of the groups that have objects, ascending.
    pub fn group_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .descriptors
            .iter()
            .map(Descriptor::group_id)
            .filter(|&g| g != 0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The objects linked to `target` (e.g. the signatures of a group).
    pub fn linked_to(&self, target: Link) -> impl Iterator<Item = &Descriptor> {
        self.descriptors.iter().filter(move |d| d.link() == target)
    }

    /// The primary system partition: the one used FS object of partition type
    /// *System. None or several is an error.
    pub fn primary_partition(&mut self) -> Result<Partition> {
        self.validate()?;
        match self.root.as_ref() {
            Some(Root::One { partition, .. }) => Ok(*partition),
            Some(Root::Multiple(ids)) => {
                Err(self.problem(Problem::MultiplePrimaryPartitions { ids: ids.clone() }))
            }
            _ => Err(self.problem(Problem::NoPrimaryPartition)),
        }
    }

    /// The primary partition's squashfs superblock, checked (see [`Superblock::check`]).
    pub fn root_superblock(&mut self) -> Result<Superblock> {
        let partition = self.primary_partition()?;
        if partition.fs_type != FsType::Squashfs {
            return Err(self.problem(Problem::NotSquashfs {
                id: partition.id,
                fs_type: partition.fs_type,
            }));
        }
        let raw = match self.root.as_ref() {
            Some(Root::One {
                superblock: Some(raw),
                ..
            }) => raw,
            _ => {
                return Err(self.problem(Problem::SuperblockTruncated {
                    id: partition.id,
                    size: partition.size,
                }))
            }
        };
        let superblock = Superblock::parse(raw);
        superblock
            .check(partition.id, partition.size)
            .map_err(|p| self.problem(p))?;
        Ok(superblock)
    }

    /// Whether berth can run this image here: a valid image whose primary partition is
    /// a squashfs the kernel can mount, of an architecture this host runs (natively or
    /// through binfmt_misc). Returns the partition to mount.
    pub fn check_runnable_on_host(&mut self) -> Result<Partition> {
        self.check_runnable_on(Arch::host(), Path::new(arch::BINFMT_MISC_DIR))
    }

    /// [`Image::check_runnable_on_host`] for a given host architecture and binfmt_misc
    /// directory.
    pub fn check_runnable_on(&mut self, host: Arch, binfmt_dir: &Path) -> Result<Partition> {
        let partition = self.primary_partition()?;
        self.root_superblock()?;
        let arch = partition.arch;
        if !arch.runs_natively_on(host) && !arch::can_emulate(arch, binfmt_dir) {
            return Err(self.problem(Problem::ArchMismatch { image: arch, host }));
        }
        Ok(partition)
    }

    /// The bytes of object `d`.
    pub fn read_object(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let (offset, size) = self.object_bounds(d)?;
        let len = usize::try_from(size).map_err(|_| {
            self.io_error(
                "read an object",
                io::Error::new(io::ErrorKind::OutOfMemory, "object too large"),
            )
        })?;
        let mut data = vec![0u8; len];
        self.read_at(&mut data, offset, "read an object")?;
        Ok(data)
    }

    /// Copies the bytes of object `d` to `out`, 64 KiB at a time; returns the count.
    pub fn copy_object(&self, d: &Descriptor, out: &mut dyn Write) -> Result<u64> {
        let (offset, size) = self.object_bounds(d)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(buf.len() as u64) as usize;
            self.read_at(&mut buf[..n], offset + done, "read an object")?;
            out.write_all(&buf[..n])
                .map_err(|e| SifError::io("<output>", "write the object", e))?;
            done += n as u64;
        }
        Ok(done)
    }

    /// Offset and size of `d`, checked to lie inside the file even when the image was
    /// read without validation.
    fn object_bounds(&self, d: &Descriptor) -> Result<(u64, u64)> {
        let what = super::error::Region::Object { id: d.id };
        let field = |field| super::error::Field::Object { id: d.id, field };
        if d.offset < 0 {
            return Err(self.problem(Problem::Negative {
                field: field("offset"),
                value: d.offset,
            }));
        }
        if d.size < 0 {
            return Err(self.problem(Problem::Negative {
                field: field("size"),
                value: d.size,
            }));
        }
        let end = d.end().ok_or_else(|| {
            self.problem(Problem::Overflow {
                what,
                offset: d.offset,
                size: d.size,
            })
        })?;
        if end as u64 > self.file_len {
            return Err(self.problem(Problem::PastEnd {
                what,
                start: d.offset,
                end,
                len: self.file_len,
            }));
        }
        Ok((d.offset as u64, d.size as u64))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64, action: &'static str) -> Result<()> {
        self.source
            .read_exact_at(buf, offset)
            .map_err(|e| self.io_error(action, e))
    }

    fn problem(&self, problem: Problem) -> SifError {
        SifError::Image {
            path: self.path(),
            problem,
        }
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> SifError {
        SifError::io(self.path(), action, source)
    }
}

/// The partition `d` describes, if it is one with a non-negative offset and size
/// (always, once validated).
fn partition_of(d: &Descriptor) -> Option<Partition> {
    let meta = d.partition()?;
    Some(Partition {
        id: d.id,
        group_id: d.group_id(),
        offset: u64::try_from(d.offset).ok()?,
        size: u64::try_from(d.size).ok()?,
        fs_type: meta.fs_type,
        part_type: meta.part_type,
        arch: meta.arch,
    })
}
