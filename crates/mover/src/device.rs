//! Block sources and targets: where volume data is read from and written to. Files and block
//! devices now; snapshots through the EBS direct APIs and the embedded cloud's volumes later
//! implement the same traits.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::error::MoverError;

/// Something to read a volume from, block by block, from many threads at once.
pub trait BlockSource: Sync {
    /// The volume size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` (whose length is the block's length) with the block at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError>;
    /// What it is, for the restore point: (`file` or `device`, path).
    fn describe(&self) -> (String, String);
    /// The indexes of the `block_size` blocks that may hold data, in order, where the source
    /// knows them as a list (an EBS snapshot's); every other block reads as zeros and is not
    /// read. `None`: [`BlockSource::next_data`] says where data may be.
    fn written_blocks(&self, block_size: u64) -> Option<Vec<u64>> {
        let _ = block_size;
        None
    }
    /// The next stretch of bytes at or after `offset` that may hold data (the rest reads as
    /// zeros and is not read), `None` if none does; asked as the backup goes, so that a sparse
    /// source of any size costs no memory. By default, everything may hold data.
    fn next_data(&self, offset: u64) -> Result<Option<std::ops::Range<u64>>, MoverError> {
        Ok((offset < self.size()).then(|| offset..self.size()))
    }
}

/// Something to write a volume into, block by block, from many threads at once.
pub trait BlockTarget: Sync {
    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), MoverError>;
    /// Whether unwritten ranges read as zeros, so zero blocks need not be written (a sparse
    /// file, a fresh EBS volume); false for a device of unknown content.
    fn reads_zeros(&self) -> bool;
    /// Makes the written data durable.
    fn finish(&self) -> Result<(), MoverError>;
}

/// A regular file or a block device, read with positioned reads.
pub struct FileSource {
    file: File,
    size: u64,
    path: PathBuf,
    device: bool,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self, MoverError> {
        let io = |e| MoverError::Source {
            path: path.to_path_buf(),
            error: e,
        };
        let mut file = File::open(path).map_err(io)?;
        let device = file.metadata().map_err(io)?.file_type().is_block_device();
        // The length of a block device is where a seek to its end lands.
        let size = file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            file,
            size,
            path: path.to_path_buf(),
            device,
        })
    }
}

impl BlockSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), MoverError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| MoverError::Source {
                path: self.path.clone(),
                error: e,
            })
    }

    fn describe(&self) -> (String, String) {
        let kind = if self.device { "device" } else { "file" };
        (kind.to_owned(), self.path.display().to_string())
    }

    /// The data extents of a sparse file, by `lseek` with `SEEK_DATA` and `SEEK_HOLE` (which
    /// moves the file's offset, unused by the positioned reads). A file system or device that
    /// cannot tell holes says everything is data.
    fn next_data(&self, offset: u64) -> Result<Option<std::ops::Range<u64>>, MoverError> {
        use rustix::fs::{seek, SeekFrom};
        if offset >= self.size {
            return Ok(None);
        }
        let everything = Ok(Some(offset..self.size));
        if self.device {
            return everything;
        }
        let start = match seek(&self.file, SeekFrom::Data(offset)) {
            Ok(start) => start,
            // No data at or after `offset`.
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(_) => return everything,
        };
        match seek(&self.file, SeekFrom::Hole(start)) {
            Ok(end) if end > start => Ok(Some(start..end.min(self.size))),
            _ => everything,
        }
    }
}

/// A regular file (created sparse, of the volume's size) or a block device.
pub struct FileTarget {
    file: File,
    path: PathBuf,
    sparse: bool,
}

impl FileTarget {
    /// Opens `path` for a restore of `size` bytes. A regular file is truncated and made
    /// sparse: zero blocks stay holes. A block device is written in place and must be at
    /// least `size` bytes.
    pub fn create(path: &Path, size: u64) -> Result<Self, MoverError> {
        let io = |e| MoverError::Target {
            path: path.to_path_buf(),
            error: e,
        };
        let device = std::fs::metadata(path)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if device {
            let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
            let device_size = file.seek(SeekFrom::End(0)).map_err(io)?;
            if device_size < size {
                return Err(MoverError::TargetTooSmall {
                    path: path.to_path_buf(),
                    size: device_size,
                    needed: size,
                });
            }
            return Ok(Self {
                file,
                path: path.to_path_buf(),
                sparse: false,
            });
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        file.set_len(size).map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            sparse: true,
        })
    }
}

impl BlockTarget for FileTarget {
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), MoverError> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| MoverError::Target {
                path: self.path.clone(),
                error: e,
            })
    }

    fn reads_zeros(&self) -> bool {
        self.sparse
    }

    fn finish(&self) -> Result<(), MoverError> {
        self.file.sync_all().map_err(|e| MoverError::Target {
            path: self.path.clone(),
            error: e,
        })
    }
}
