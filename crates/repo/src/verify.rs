//! Verify: find every missing or damaged file and block, and name the restore points that
//! cannot be restored because of it.
//!
//! Without `read_data`, the structure is checked: every index and manifest opens, every pack an
//! index names exists and is long enough, every block a restore point needs is indexed. With
//! `read_data`, every pack is read whole and every block authenticated and checked against its
//! id, so that bit rot in a pack is found before a restore needs it.
//!
//! Each pack, index file and restore point gets a state: missing, damaged, or intact (and with
//! Object Lock, retained until when). With Object Lock, verify also checks the retention rule:
//! every file a retained restore point needs is retained at least as long as the point.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::error::RepoError;
use crate::id::Id;
use crate::lock::LockKind;
use crate::repository::{Index, Repository};
use bulwark_storage::FileKind;

/// What verify found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Problems, each naming a file or block and what is wrong with it.
    pub problems: Vec<String>,
    /// Restore points that cannot be fully restored, with the first reason for each.
    pub damaged_points: BTreeMap<Id, String>,
    /// Restore points checked.
    pub points: usize,
    /// Packs checked (read whole with `read_data`).
    pub packs: usize,
    /// Bytes the packs in the store take (the repository's size, but for its small files).
    pub stored_bytes: u64,
    /// Blocks authenticated (with `read_data`).
    pub blocks_read: usize,
    /// Packs no index lists: left by an interrupted backup; harmless, `prune` removes them.
    pub unreferenced_packs: usize,
    /// Files that are not the repository's (stray names), skipped: no damage.
    pub warnings: Vec<String>,
    /// The state of every pack, index file and restore point, by path (`data/ab/ab01...`).
    pub objects: BTreeMap<String, ObjectState>,
}

/// What verify found of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectState {
    /// Listed (by an index file) but not in the store.
    Missing,
    /// In the store, but not what it should be.
    Damaged(String),
    /// In the store and sound; with Object Lock, retained until the date (locked and intact),
    /// or `None` (not retained, or no longer).
    Intact {
        /// When it becomes deletable, if it is retained.
        retained_until: Option<DateTime<Utc>>,
    },
}

impl VerifyReport {
    fn set(&mut self, kind: FileKind, id: &Id, state: ObjectState) {
        let path = kind.path(&id.to_hex());
        // The first damage found is kept.
        if !matches!(
            self.objects.get(&path),
            Some(ObjectState::Damaged(_) | ObjectState::Missing)
        ) {
            self.objects.insert(path, state);
        }
    }
}

const INTACT: ObjectState = ObjectState::Intact { retained_until: None };

impl VerifyReport {
    /// Whether the repository is sound.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.damaged_points.is_empty()
    }
}

/// Verifies the repository; `threads` read packs in parallel with `read_data`.
pub fn verify(repo: &Repository, read_data: bool, threads: usize) -> Result<VerifyReport, RepoError> {
    let _lock = repo.lock(LockKind::Shared)?;
    let mut report = VerifyReport::default();

    // Index files: one that does not open loses track of its blocks, which shows below as
    // points with unindexed blocks.
    let mut index = Index::default();
    let mut files = repo.list_ids(FileKind::Index)?;
    files.sort();
    for (id, _) in files {
        match repo.read_index_file(&id) {
            Ok(file) => {
                index.add(id, &file);
                report.set(FileKind::Index, &id, INTACT);
            }
            Err(e) => {
                report.problems.push(format!("index/{id}: {e}"));
                report.set(FileKind::Index, &id, ObjectState::Damaged(e.to_string()));
            }
        }
    }

    // Packs: present, and long enough for the blocks the index places in them.
    let stored: HashMap<String, u64> = repo
        .list_ids(FileKind::Pack)?
        .into_iter()
        .map(|(id, size)| (id.to_hex(), size))
        .collect();
    report.stored_bytes = stored.values().sum();
    let mut bad_blocks: HashMap<Id, String> = HashMap::new();
    let mut needed_len: HashMap<u32, u64> = HashMap::new();
    for loc in index.blocks.values() {
        let end = u64::from(loc.entry.offset) + u64::from(loc.entry.length);
        let e = needed_len.entry(loc.pack).or_default();
        *e = (*e).max(end);
    }
    let indexed: HashSet<String> = index.packs.iter().map(Id::to_hex).collect();
    report.unreferenced_packs = stored.keys().filter(|p| !indexed.contains(*p)).count();
    let mut missing_packs = BTreeSet::new();
    for (p, pack) in index.packs.iter().enumerate() {
        let name = pack.to_hex();
        let need = needed_len.get(&(p as u32)).copied().unwrap_or(0);
        match stored.get(&name) {
            None => {
                report
                    .problems
                    .push(format!("data/{name}: missing (listed by an index)"));
                report.set(FileKind::Pack, pack, ObjectState::Missing);
                missing_packs.insert(p as u32);
            }
            Some(len) if *len < need => {
                let why = format!("{len} bytes, its blocks need {need}: truncated");
                report.problems.push(format!("data/{name}: {why}"));
                report.set(FileKind::Pack, pack, ObjectState::Damaged(why));
                missing_packs.insert(p as u32);
            }
            Some(_) => report.set(FileKind::Pack, pack, INTACT),
        }
    }
    for (id, loc) in &index.blocks {
        if missing_packs.contains(&loc.pack) {
            bad_blocks.insert(
                *id,
                format!(
                    "its pack {} is missing or truncated",
                    index.packs[loc.pack as usize]
                ),
            );
        }
    }

    if read_data {
        for (p, checked) in read_packs(repo, &index, &missing_packs, threads) {
            if let Some(first) = checked.problems.first() {
                let pack = index.packs[p as usize];
                report.set(FileKind::Pack, &pack, ObjectState::Damaged(first.clone()));
            }
            report.problems.extend(checked.problems);
            report.blocks_read += checked.read;
            bad_blocks.extend(checked.damaged);
        }
    }
    report.packs = index.packs.len() - missing_packs.len();

    // Restore points: each block must be indexed and sound.
    let mut retained = Vec::new();
    for id in repo.point_ids()? {
        report.points += 1;
        let manifest = match repo.read_point(&id) {
            Ok(m) => m,
            Err(e) => {
                report.problems.push(format!("points/{id}: {e}"));
                report.set(FileKind::Point, &id, ObjectState::Damaged(e.to_string()));
                report
                    .damaged_points
                    .insert(id, format!("its manifest cannot be read: {e}"));
                continue;
            }
        };
        report.set(FileKind::Point, &id, INTACT);
        if repo.config().object_lock.is_some() {
            let needs = repo.packs_of(&manifest, &index).unwrap_or_default();
            retained.push((id, manifest.time, needs));
        }
        if let Some(reason) = point_damage(repo, &index, &bad_blocks, &manifest) {
            report.damaged_points.insert(
                id,
                format!(
                    "{} ({}): {reason}",
                    manifest.volume_id,
                    manifest.time.to_rfc3339()
                ),
            );
        }
    }
    if repo.config().object_lock.is_some() {
        check_retention(repo, &index, &retained, &mut report)?;
    }
    report.warnings = repo.take_warnings();
    Ok(report)
}

/// With Object Lock: reads every intact file's retention, and checks the rule that every file
/// a retained restore point needs (its packs and the index files listing them) is retained at
/// least as long as the point.
fn check_retention(
    repo: &Repository,
    index: &Index,
    points: &[(Id, DateTime<Utc>, HashSet<u32>)],
    report: &mut VerifyReport,
) -> Result<(), RepoError> {
    let mut until: HashMap<String, Option<DateTime<Utc>>> = HashMap::new();
    for (path, state) in report.objects.iter_mut() {
        if let ObjectState::Intact { retained_until } = state {
            let (kind, name) = match path.split_once('/') {
                Some(("data", rest)) => (FileKind::Pack, rest.rsplit('/').next().unwrap_or(rest)),
                Some(("index", name)) => (FileKind::Index, name),
                Some(("points", name)) => (FileKind::Point, name),
                _ => continue,
            };
            *retained_until = repo.retained_until(kind, name)?;
            until.insert(path.clone(), *retained_until);
        }
    }
    let mut listed_by: HashMap<Id, Vec<Id>> = HashMap::new();
    for (p, pack) in index.packs.iter().enumerate() {
        if let Some(file) = index.pack_files.get(p).and_then(|f| index.files.get(*f as usize)) {
            listed_by.entry(*pack).or_default().push(*file);
        }
    }
    let mut problems = BTreeSet::new();
    for (id, time, packs) in points {
        let point_path = FileKind::Point.path(&id.to_hex());
        let Some(point_until) = until.get(&point_path).copied().flatten() else {
            // Expired (or never retained: a point written without Object Lock).
            if let Some(asked) = repo.point_retention(*time)?.filter(|r| r.holds_at(Utc::now())) {
                problems.insert(format!(
                    "{point_path}: not retained, but its repository's Object Lock asks until {}",
                    asked.until.to_rfc3339()
                ));
            }
            continue;
        };
        for &p in packs {
            let pack = index.packs[p as usize];
            // The pack, and some index file that lists it (any: a block is found through the
            // first listing, and a prune's merged index may list it beside the original).
            let pack_path = FileKind::Pack.path(&pack.to_hex());
            let listings: Vec<Option<DateTime<Utc>>> = listed_by
                .get(&pack)
                .into_iter()
                .flatten()
                .filter_map(|f| until.get(&FileKind::Index.path(&f.to_hex())).copied())
                .collect();
            let checks = [
                (pack_path.clone(), until.get(&pack_path).copied()),
                (
                    format!("the index files listing {pack_path}"),
                    (!listings.is_empty()).then(|| listings.iter().copied().max().flatten()),
                ),
            ];
            for (what, file_until) in checks {
                // A file that is not intact (missing, damaged) is reported already.
                let Some(file_until) = file_until else {
                    continue;
                };
                if file_until.is_none_or(|u| u < point_until) {
                    let held = file_until.map_or_else(
                        || "not retained".to_owned(),
                        |u| format!("retained until {}", u.to_rfc3339()),
                    );
                    problems.insert(format!(
                        "{what}: {held}, but {point_path} needs it until {}: it could be deleted first",
                        point_until.to_rfc3339()
                    ));
                }
            }
        }
    }
    report.problems.extend(problems);
    Ok(())
}

/// Why a restore point cannot be fully restored (the first reason found), if it can't.
fn point_damage(
    repo: &Repository,
    index: &Index,
    bad_blocks: &HashMap<Id, String>,
    manifest: &crate::format::Manifest,
) -> Option<String> {
    /// Stops the walk over the blocks at the first damage.
    enum Stop {
        Damage(String),
        Unreadable(RepoError),
    }
    impl From<RepoError> for Stop {
        fn from(e: RepoError) -> Self {
            Stop::Unreadable(e)
        }
    }
    let check = |what: String, id: &Id| {
        if !index.contains(id) {
            Some(format!("{what} ({}) is in no index", id.short()))
        } else {
            bad_blocks
                .get(id)
                .map(|why| format!("{what} ({}): {why}", id.short()))
        }
    };
    for chunk in &manifest.map {
        if let Some(reason) = check(
            format!("its block map chunk of blocks {}..{}", chunk.start, chunk.end),
            &chunk.id,
        ) {
            return Some(reason);
        }
    }
    for (n, id) in manifest.files.iter().flat_map(|f| f.chunks.iter().enumerate()) {
        if let Some(reason) = check(format!("its file index chunk {n}"), id) {
            return Some(reason);
        }
    }
    let walk = repo.for_each_block(manifest, index, usize::MAX, |window| {
        for (i, block) in window {
            if let Some(reason) = check(format!("block {i}"), block) {
                return Err(Stop::Damage(reason));
            }
        }
        Ok(())
    });
    match walk {
        Ok(()) => None,
        Err(Stop::Damage(reason)) => Some(reason),
        Err(Stop::Unreadable(e)) => Some(format!("its block map cannot be read: {e}")),
    }
}

/// Reads every present pack whole and authenticates every block the index places in it.
fn read_packs(repo: &Repository, index: &Index, skip: &BTreeSet<u32>, threads: usize) -> Vec<(u32, Checked)> {
    let by_pack = index.by_pack();
    let packs: Vec<u32> = (0..index.packs.len() as u32)
        .filter(|p| !skip.contains(p))
        .collect();
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&p) = packs.get(i) else { break };
                let pack = index.packs[p as usize];
                let checked = check_pack(repo, &pack, by_pack.get(&p).map_or(&[][..], Vec::as_slice));
                out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((p, checked));
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What reading one pack found: problems, damaged blocks with reasons, blocks read.
struct Checked {
    problems: Vec<String>,
    damaged: Vec<(Id, String)>,
    read: usize,
}

fn check_pack(repo: &Repository, pack: &Id, entries: &[crate::format::BlockEntry]) -> Checked {
    let mut problems = Vec::new();
    let mut damaged = Vec::new();
    let name = pack.to_hex();
    let bytes = match repo.backend().get(FileKind::Pack, &name) {
        Ok(b) => b,
        Err(e) => {
            problems.push(format!("data/{name}: {e}"));
            damaged.extend(
                entries
                    .iter()
                    .map(|e| (e.id, format!("its pack {} cannot be read", pack.short()))),
            );
            return Checked {
                problems,
                damaged,
                read: 0,
            };
        }
    };
    if Id::of_file(&bytes) != *pack {
        problems.push(format!("data/{name}: content does not match its name (damaged)"));
    }
    if let Err(e) = repo.pack_header(pack, &bytes) {
        problems.push(format!("data/{name}: header: {e}"));
    }
    let mut read = 0;
    for entry in entries {
        let (start, end) = (
            entry.offset as usize,
            entry.offset as usize + entry.length as usize,
        );
        let result = bytes
            .get(start..end)
            .ok_or_else(|| RepoError::Corrupt("past the end of the pack".into()))
            .and_then(|sealed| repo.open_block(entry, sealed, &|| format!("block {}", entry.id)));
        read += 1;
        if let Err(e) = result {
            problems.push(format!(
                "data/{name}: block {} at offset {}: {e}",
                entry.id, entry.offset
            ));
            damaged.push((entry.id, format!("damaged in pack {}", pack.short())));
        }
    }
    Checked {
        problems,
        damaged,
        read,
    }
}
