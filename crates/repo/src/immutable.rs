//! Immutable backups: a repository created with Object Lock (`governance` or `compliance`, N
//! days) retains every file a restore point needs for at least as long as the point itself.
//!
//! The rule: a restore point whose backup started at T is retained until U = T + N days. Before
//! it is written, every file it needs is retained until at least U:
//!
//! - the packs and index files the backup writes are written retained until U;
//! - the packs it reuses (blocks deduplicated against older packs, its parent's unchanged blocks
//!   and block map chunks) and, for each, the index file through which the backup found it, are
//!   extended (PutObjectRetention) when retained shorter, to U plus a quarter of the lock period
//!   (at least a day), so that daily backups extend a pack about every quarter period, not every
//!   day;
//! - the config and the key files (without which nothing can be read) likewise.
//!
//! Retentions are only ever extended, never shortened. `forget` and `prune` never try to delete
//! a retained file: they keep it, and say when it becomes deletable. A file no point needs
//! becomes deletable when the last point that needed it expires.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::error::RepoError;
use crate::format::{Config, Manifest};
use crate::repository::{Index, Repository};
use bulwark_storage::{BackendError, FileKind, Retention as ObjectRetention};

/// Threads that extend retentions at once: each extension is a HEAD and maybe a PUT.
const EXTEND_THREADS: usize = 8;

/// The next whole second at or after `t` (S3 keeps retention dates in seconds: rounding down
/// would retain a file a moment less than asked).
fn whole_second_after(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

/// The retention of what a repository of `config` writes at `time` (`None` without Object
/// Lock): until `time` plus the lock's days.
pub(crate) fn retention_from(
    config: &Config,
    time: DateTime<Utc>,
) -> Result<Option<ObjectRetention>, RepoError> {
    let Some(lock) = &config.object_lock else {
        return Ok(None);
    };
    let mode = lock.mode().map_err(RepoError::Corrupt)?;
    Ok(Some(ObjectRetention {
        mode,
        until: whole_second_after(time + Duration::days(i64::from(lock.days))),
    }))
}

impl Repository {
    /// The retention of a restore point whose backup started at `time` (`None` without Object
    /// Lock).
    pub fn point_retention(&self, time: DateTime<Utc>) -> Result<Option<ObjectRetention>, RepoError> {
        retention_from(self.config(), time)
    }

    /// Retains everything a restore point retained as `point` needs that the backup did not
    /// write itself: `used_packs` (of `index`), the index files that listed them, the config and
    /// the key files. Called before the point is written.
    pub fn retain_for_point(
        &self,
        index: &Index,
        used_packs: &HashSet<u32>,
        point: ObjectRetention,
    ) -> Result<(), RepoError> {
        let Some(lock) = &self.config().object_lock else {
            return Ok(());
        };
        let slack = Duration::days(i64::from((lock.days / 4).max(1)));
        let target = ObjectRetention {
            mode: point.mode,
            until: point.until + slack,
        };
        let mut files: BTreeSet<(FileKind, String)> = BTreeSet::new();
        for &p in used_packs {
            if let Some(pack) = index.packs.get(p as usize) {
                files.insert((FileKind::Pack, pack.to_hex()));
            }
            if let Some(file) = index
                .pack_files
                .get(p as usize)
                .and_then(|f| index.files.get(*f as usize))
            {
                files.insert((FileKind::Index, file.to_hex()));
            }
        }
        files.insert((FileKind::Config, "config".into()));
        for (name, _) in self.backend().list(FileKind::Key)? {
            files.insert((FileKind::Key, name));
        }
        let files: Vec<(FileKind, String)> = files.into_iter().collect();
        let failures: Vec<RepoError> = std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(files.len().div_ceil(EXTEND_THREADS).max(1))
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .filter_map(|(kind, name)| self.retain_at_least(*kind, name, point, target).err())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        match failures.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(RepoError::Corrupt(format!(
                "the files the new restore point needs could not all be retained ({e}); it was not \
                 written: run the backup again"
            ))),
        }
    }

    /// Extends a file's retention to `target` if it is retained shorter than `needed`.
    fn retain_at_least(
        &self,
        kind: FileKind,
        name: &str,
        needed: ObjectRetention,
        target: ObjectRetention,
    ) -> Result<(), RepoError> {
        match self.backend().retention(kind, name)? {
            Some(current) if current.until >= needed.until && current.mode >= needed.mode => Ok(()),
            _ => self.retain_until(kind, name, target),
        }
    }

    /// The packs (of `index`) holding the blocks, block map chunks and file index chunks of a
    /// restore point.
    pub fn packs_of(&self, manifest: &Manifest, index: &Index) -> Result<HashSet<u32>, RepoError> {
        let mut packs = HashSet::new();
        let mut add = |id: &crate::id::Id| {
            if let Some(loc) = index.blocks.get(id) {
                packs.insert(loc.pack);
            }
        };
        manifest.metadata_blobs().for_each(&mut add);
        self.for_each_block(manifest, index, usize::MAX, |window| {
            window.iter().for_each(|(_, id)| add(id));
            Ok::<(), RepoError>(())
        })?;
        Ok(packs)
    }

    /// When a file becomes deletable: `Some(date)` while it is retained. Without Object Lock,
    /// nothing is asked of the store.
    pub fn retained_until(&self, kind: FileKind, name: &str) -> Result<Option<DateTime<Utc>>, RepoError> {
        if self.config().object_lock.is_none() {
            return Ok(None);
        }
        match self.backend().retention(kind, name) {
            Ok(r) => Ok(r.filter(|r| r.holds_at(Utc::now())).map(|r| r.until)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a file unless it is retained; answers `Some(date)` (and deletes nothing) if it
    /// is retained until then. It is never tried while retained: with Object Lock, the
    /// retention is read first (a store that cannot tell might hide the file behind a delete
    /// marker instead of refusing).
    pub fn delete_unless_retained(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<DateTime<Utc>>, RepoError> {
        if let Some(until) = self.retained_until(kind, name)? {
            return Ok(Some(until));
        }
        match self.backend().delete(kind, name) {
            Ok(()) => Ok(None),
            Err(BackendError::Locked { until, .. }) => Ok(Some(until)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_up_to_whole_seconds() {
        let t = DateTime::from_timestamp(100, 1).unwrap();
        assert_eq!(whole_second_after(t).timestamp(), 101);
        let t = DateTime::from_timestamp(100, 0).unwrap();
        assert_eq!(whole_second_after(t).timestamp(), 100);
    }
}
