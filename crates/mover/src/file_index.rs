//! A restore point's file index, made as a backup ends: the new point is read back as a volume
//! of files (`bulwark-fs`, through the repository), every entry's metadata is listed, and the
//! listing is stored in chunks that the manifest names ([`bulwark_repo::file_index`]).
//!
//! The point is read rather than the source because the point is always whole: an incremental
//! backup's source is only the blocks that changed. What the filesystem readers cannot read (an
//! unsupported partition, a damaged directory) is recorded with the index, never a failure of
//! the backup; a failure to store the index is one, like any other write.

use std::collections::HashSet;
use std::sync::Arc;

use bulwark_fs::{Cached, Content, FileKind, Metadata, Volume};
use bulwark_repo::{
    EntryKind, FileEntry, FileIndex, FileIndexBuilder, Index, Lock, Manifest, Repository, Writer,
};
use bulwark_storage::Retention;

use crate::error::MoverError;
use crate::files::PointDevice;

/// What indexing stored.
pub(crate) struct Indexed {
    /// The index, for the manifest.
    pub files: FileIndex,
    /// Bytes it added to the repository (sealed).
    pub bytes_stored: u64,
}

/// Lists the files of the unwritten restore point `manifest` (its blocks in `index`) and
/// stores the listing. Packs of `index` that hold chunks it reuses go into `used_packs`, for
/// their retention to cover the new point.
pub(crate) fn index_files(
    repo: &Repository,
    lock: &Lock,
    retention: Option<Retention>,
    index: &Arc<Index>,
    manifest: &Manifest,
    mut used_packs: Option<&mut HashSet<u32>>,
) -> Result<Indexed, MoverError> {
    let device = PointDevice::unwritten(repo.clone(), index.clone(), manifest.clone());
    let writer = Writer::new(repo, index).with_lock(lock).with_retention(retention);
    let mut packer = writer.packer()?;
    let mut chunks = Vec::new();
    // Each chunk is stored as it fills, so that memory does not grow with the filesystem.
    let mut store = |chunk: Vec<u8>| -> Result<(), MoverError> {
        let id = repo.keys().block_id(&chunk);
        if let (Some(used), Some(at)) = (used_packs.as_deref_mut(), index.blocks.get(&id)) {
            used.insert(at.pack);
        }
        writer.store_blob(&mut packer, id, &chunk)?;
        chunks.push(id);
        Ok(())
    };
    let mut builder = FileIndexBuilder::default();
    let mut unsaid = 0;
    let mut failed = None;
    match Volume::open(Cached::new(device)) {
        Err(e) => builder.problem(format!("the volume: {e}")),
        Ok(volume) => {
            // What holds no filesystem read here (LVM, swap, unknown bytes) is said; an empty
            // partition has nothing to index.
            for p in volume.partitions() {
                if p.fs.is_none() && p.error.is_none() && p.content != Content::Empty {
                    builder.problem(format!(
                        "partition {}: {}, not indexed",
                        p.entry.number,
                        p.describe()
                    ));
                }
            }
            let summary = bulwark_fs::list_volume(&volume, &mut |path, md| {
                let chunk = builder.push(&entry(path, md));
                if let (Some(chunk), None) = (chunk, &failed) {
                    failed = store(chunk).err();
                }
            });
            unsaid = summary.error_count.saturating_sub(summary.errors.len() as u64);
            for problem in summary.errors {
                builder.problem(problem);
            }
        }
    }
    let (last, mut files) = builder.finish();
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(chunk) = last {
        store(chunk)?;
    }
    files.chunks = chunks;
    files.problem_count += unsaid;
    writer.flush(&mut packer)?;
    let written = writer.finish()?;
    Ok(Indexed {
        files,
        bytes_stored: written.bytes_stored,
    })
}

/// The index's entry for `path`.
fn entry(path: &[u8], md: &Metadata) -> FileEntry {
    FileEntry {
        path: path.to_vec(),
        kind: match md.kind {
            FileKind::File => EntryKind::File,
            FileKind::Dir => EntryKind::Dir,
            FileKind::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        },
        mode: md.mode,
        uid: md.uid,
        gid: md.gid,
        size: md.size,
        mtime_secs: md.mtime.secs,
        mtime_nanos: md.mtime.nanos,
    }
}
