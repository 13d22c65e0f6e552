//! Forget and prune: remove restore points by a retention policy, then the blocks no restore
//! point needs any more.
//!
//! Prune is planned, then executed (as rustic_core does), under an exclusive lock, which no
//! backup can hold at the same time: the blocks a running backup deduplicates against can
//! never disappear under it. It refuses to run if any restore point cannot be read, since it
//! could not know which blocks that point needs. The execution order keeps the repository
//! valid if it is killed at any moment: new packs, then the new index, then the old index
//! files, then the old packs.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::error::RepoError;
use crate::format::{BlockEntry, IndexFile, IndexPack};
use crate::id::Id;
use crate::lock::LockKind;
use crate::repository::{Damaged, Index, Repository};
use crate::retention::{self, Decision, PointInfo, Reason, Retention};
use crate::writer::Writer;
use bulwark_storage::{BackendError, FileKind};

/// Packs whose unused part is at least this fraction are rewritten with only their used
/// blocks; below it, the space is not worth a rewrite.
const REPACK_UNUSED_FRACTION: f64 = 0.2;

/// Applies `policy` to the restore points and, unless `dry_run`, removes those it does not
/// keep. Returns every decision.
pub fn forget(
    repo: &Repository,
    policy: &Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<(Decision, PointInfo)>, RepoError> {
    let _lock = repo.lock(LockKind::Shared)?;
    let points: Vec<PointInfo> = repo
        .points()?
        .into_iter()
        .map(|(id, m)| PointInfo {
            id: id.to_hex(),
            volume_id: m.volume_id,
            time: m.time,
        })
        .collect();
    let mut decisions =
        retention::apply(&points, policy, now).map_err(|e| RepoError::Corrupt(e.to_string()))?;
    for d in decisions.iter_mut().filter(|d| !d.keep) {
        if let Some(until) = forget_one(repo, &d.id, dry_run)? {
            d.keep = true;
            d.reasons.push(Reason::Retained(until));
        }
    }
    Ok(decisions.into_iter().zip(points).collect())
}

/// Removes the restore points `ids` (decided elsewhere, as the appliance decides by policy;
/// their blocks go at the next prune). Answers, per id, `Some(date)` for a point Object Lock
/// retains until then (kept, never tried); a point already gone counts as removed.
pub fn forget_points(repo: &Repository, ids: &[String]) -> Result<Vec<Option<DateTime<Utc>>>, RepoError> {
    for id in ids {
        // Only restore point ids name files here: anything else is refused before a delete.
        id.parse::<Id>()
            .map_err(|e| RepoError::Corrupt(format!("{:?} is not a restore point id", e.0)))?;
    }
    let _lock = repo.lock(LockKind::Shared)?;
    ids.iter().map(|id| forget_one(repo, id, false)).collect()
}

/// Removes one restore point unless Object Lock retains it (then: until when); `dry_run` only
/// says whether it would be retained.
fn forget_one(repo: &Repository, id: &str, dry_run: bool) -> Result<Option<DateTime<Utc>>, RepoError> {
    let retained = if dry_run {
        repo.retained_until(FileKind::Point, id)
    } else {
        repo.delete_unless_retained(FileKind::Point, id)
    };
    match retained {
        Err(RepoError::Backend(BackendError::NotFound(_))) => Ok(None),
        other => other,
    }
}

/// What prune will do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Packs with no used block, to delete.
    pub delete: Vec<Id>,
    /// Packs with enough unused space to rewrite.
    pub repack: Vec<Id>,
    /// Packs no index lists (left by interrupted backups), to delete.
    pub unreferenced: Vec<Id>,
    /// Index files to replace by one new index.
    pub old_index_files: Vec<Id>,
    /// Blocks restore points use.
    pub used_blocks: usize,
    /// Bytes freed: deleted and unreferenced packs, and the unused part of repacked ones.
    pub bytes_freed: u64,
    /// Files skipped because they are not the repository's (left alone, never deleted).
    pub warnings: Vec<String>,
    /// Files prune would delete but Object Lock retains, with when they become deletable (a
    /// pack listed by a retained index file stays with it: its listing must stay true).
    pub retained: Vec<(String, DateTime<Utc>)>,
    /// The blocks restore points use, read once by the plan for the execution.
    used: HashSet<Id>,
}

impl PrunePlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.repack.is_empty() && self.unreferenced.is_empty()
    }
}

/// Plans a prune: which packs to delete or rewrite. Read-only.
pub fn prune_plan(repo: &Repository, index: &Index) -> Result<PrunePlan, RepoError> {
    let mut used: HashSet<Id> = HashSet::new();
    for id in repo.point_ids()? {
        // An unreadable point makes the whole prune unsafe: fail rather than guess.
        let stop = |e: RepoError| {
            RepoError::Corrupt(format!(
                "prune stopped: restore point {id} cannot be read ({e}); run `bulwark image verify`"
            ))
        };
        let manifest = repo.read_point(&id).map_err(stop)?;
        used.extend(manifest.metadata_blobs().copied());
        repo.for_each_block(&manifest, index, usize::MAX, |window| {
            used.extend(window.iter().map(|(_, b)| *b));
            Ok::<(), RepoError>(())
        })
        .map_err(stop)?;
    }
    // Only files named by ids: a foreign object under data/ is not ours to delete.
    let stored: HashMap<Id, u64> = repo.list_ids(FileKind::Pack)?.into_iter().collect();
    let mut plan = PrunePlan {
        used_blocks: used.len(),
        old_index_files: index.files.clone(),
        ..PrunePlan::default()
    };

    // A block's live copy is the one the index resolves to; other copies are unused.
    let by_pack = index.by_pack();
    let mut seen: HashSet<Id> = HashSet::new();
    let (mut delete, mut repack) = (Vec::new(), Vec::new());
    for (p, pack) in index.packs.iter().enumerate() {
        if !seen.insert(*pack) {
            continue;
        }
        let Some(size) = stored.get(pack).copied() else {
            continue;
        };
        let entries = by_pack.get(&(p as u32)).map_or(&[][..], Vec::as_slice);
        let live: u64 = entries
            .iter()
            .filter(|e| used.contains(&e.id))
            .map(|e| u64::from(e.length))
            .sum();
        // Unused is what unused blocks take: a pack's header is no waste (a small pack, like
        // one holding only a block map, is mostly header, and rewriting it gains nothing).
        let unused: u64 = entries
            .iter()
            .filter(|e| !used.contains(&e.id))
            .map(|e| u64::from(e.length))
            .sum();
        if live == 0 {
            delete.push((*pack, size));
        } else if unused as f64 >= REPACK_UNUSED_FRACTION * size as f64 {
            repack.push((*pack, unused));
        }
    }
    let indexed: HashSet<Id> = index.packs.iter().copied().collect();
    let mut unreferenced: Vec<(Id, u64)> = stored
        .iter()
        .filter(|(pack, _)| !indexed.contains(*pack))
        .map(|(pack, size)| (*pack, *size))
        .collect();

    // Object Lock: what is retained stays, and the plan says until when.
    let retained_files = retained_index_files(repo, index, &mut plan)?;
    let listed_by_retained = packs_listed_by(index, &retained_files);
    for (list, out) in [
        (&mut delete, &mut plan.delete),
        (&mut repack, &mut plan.repack),
        (&mut unreferenced, &mut plan.unreferenced),
    ] {
        for (pack, freed) in list.drain(..) {
            let retained = match repo.retained_until(FileKind::Pack, &pack.to_hex())? {
                Some(until) => Some(until),
                None => listed_by_retained.get(&pack).copied(),
            };
            match retained {
                Some(until) => plan.retained.push((FileKind::Pack.path(&pack.to_hex()), until)),
                None => {
                    out.push(pack);
                    plan.bytes_freed += freed;
                }
            }
        }
        out.sort();
    }
    plan.used = used;
    plan.warnings = repo.take_warnings();
    Ok(plan)
}

/// The index files Object Lock retains (by number in `index.files`), which prune keeps: they
/// leave the plan's old index files and enter its retained files.
fn retained_index_files(
    repo: &Repository,
    index: &Index,
    plan: &mut PrunePlan,
) -> Result<HashMap<u32, DateTime<Utc>>, RepoError> {
    let mut retained = HashMap::new();
    for (f, id) in index.files.iter().enumerate() {
        if let Some(until) = repo.retained_until(FileKind::Index, &id.to_hex())? {
            retained.insert(f as u32, until);
            plan.retained.push((FileKind::Index.path(&id.to_hex()), until));
        }
    }
    let kept: HashSet<Id> = retained.keys().map(|f| index.files[*f as usize]).collect();
    plan.old_index_files.retain(|id| !kept.contains(id));
    Ok(retained)
}

/// The packs the given index files list, with the latest date among their files.
fn packs_listed_by(index: &Index, files: &HashMap<u32, DateTime<Utc>>) -> HashMap<Id, DateTime<Utc>> {
    let mut packs: HashMap<Id, DateTime<Utc>> = HashMap::new();
    for (p, pack) in index.packs.iter().enumerate() {
        if let Some(until) = index.pack_files.get(p).and_then(|f| files.get(f)) {
            let e = packs.entry(*pack).or_insert(*until);
            *e = (*e).max(*until);
        }
    }
    packs
}

/// Plans and executes a prune under an exclusive lock. Returns the plan carried out.
pub fn prune(repo: &Repository) -> Result<PrunePlan, RepoError> {
    let _lock = repo.lock(LockKind::Exclusive)?;
    // Strict: the packs of an index file that cannot be read would look unreferenced.
    let index = repo.load_index_or(Damaged::Fail)?;
    let plan = prune_plan(repo, &index)?;
    if plan.is_empty() {
        return Ok(plan);
    }
    let used = &plan.used;
    let by_pack = index.by_pack();
    let entries = |p: usize| by_pack.get(&(p as u32)).map_or(&[][..], Vec::as_slice);

    // 1. Rewrite the used blocks of the packs to repack into new packs.
    let doomed: HashSet<Id> = plan.delete.iter().chain(&plan.repack).copied().collect();
    let empty = Index::default();
    let writer = Writer::new(repo, &empty);
    let mut packer = writer.packer()?;
    for pack in &plan.repack {
        let p = index.packs.iter().position(|x| x == pack).unwrap_or_default();
        let bytes = repo.backend().get(FileKind::Pack, &pack.to_hex())?;
        for entry in entries(p).iter().filter(|e| used.contains(&e.id)) {
            let sealed = bytes
                .get(entry.offset as usize..(entry.offset + entry.length) as usize)
                .ok_or_else(|| RepoError::Corrupt(format!("data/{pack}: shorter than its index says")))?;
            let block = repo.open_block(entry, sealed, &|| format!("block {} in pack {pack}", entry.id))?;
            writer.store(&mut packer, &block)?;
        }
    }
    writer.flush(&mut packer)?;
    // The new packs' index is written by finish (2a); then the index of everything kept (2b).
    writer.finish()?;

    // 2. One index of every kept pack, with only the blocks still in use.
    let mut kept = IndexFile::default();
    let mut listed: HashSet<Id> = HashSet::new();
    for (p, pack) in index.packs.iter().enumerate() {
        if doomed.contains(pack) || !listed.insert(*pack) {
            continue;
        }
        let blocks: Vec<BlockEntry> = entries(p)
            .iter()
            .filter(|e| used.contains(&e.id))
            .copied()
            .collect();
        if !blocks.is_empty() {
            kept.packs.push(IndexPack { id: *pack, blocks });
        }
    }
    let new_index = if kept.packs.is_empty() {
        None
    } else {
        Some(repo.write_index_file(&kept)?)
    };

    // 3. The old index files, now superseded (the new one may have the same name as an old
    // one, if nothing changed in what it lists). One found retained meanwhile stays, and so do
    // the packs it lists.
    let mut plan = plan;
    let mut kept_files = HashMap::new();
    for old in plan.old_index_files.iter().filter(|f| Some(**f) != new_index) {
        if let Some(until) = repo.delete_unless_retained(FileKind::Index, &old.to_hex())? {
            plan.retained.push((FileKind::Index.path(&old.to_hex()), until));
            if let Some(f) = index.files.iter().position(|x| x == old) {
                kept_files.insert(f as u32, until);
            }
        }
    }
    let still_listed = packs_listed_by(&index, &kept_files);

    // 4. The packs nothing refers to any more.
    for pack in plan
        .delete
        .iter()
        .chain(&plan.repack)
        .chain(&plan.unreferenced)
        .copied()
        .collect::<Vec<_>>()
    {
        let path = FileKind::Pack.path(&pack.to_hex());
        if let Some(until) = still_listed.get(&pack) {
            plan.retained.push((path, *until));
        } else if let Some(until) = repo.delete_unless_retained(FileKind::Pack, &pack.to_hex())? {
            plan.retained.push((path, until));
        }
    }
    Ok(plan)
}
