//! The EBS direct API data path against the embedded cloud: a snapshot backed up into the
//! repository (in full, and incrementally against its parent) restores identically, into a
//! file and into a new snapshot (encrypted too); throttling and transient failures are
//! absorbed; a block that does not match its checksum is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_cloud::{
    BlockPage, BlockRef, Cloud, CloudError, Credentials, Ebs, Ec2, ErrorKind, Result as CloudResult,
    StartSnapshot, Tag, EBS_BLOCK_SIZE,
};
use bulwark_engine::direct::{
    backup_snapshot, restore_to_snapshot, DirectError, RateLimiter, ATTEMPTS, IN_FLIGHT,
};
use bulwark_model::{AccountId, Region, SnapshotId, VolumeId};
use bulwark_mover::{FileTarget, Progress};
use bulwark_repo::{Repository, Secret};
use bulwark_sim::{Fault, Sim, SimVolume};
use bulwark_storage::{Backend, LocalBackend};
use serde_json::json;
use tempfile::TempDir;

/// One account and region of the embedded cloud with a 1 GiB volume, and a repository.
struct World {
    sim: Sim,
    account: AccountId,
    region: Region,
    volume: VolumeId,
    root: Credentials,
    repo: Repository,
    dir: TempDir,
}

impl World {
    /// The volume is unencrypted, or encrypted with a customer managed key of the account.
    fn new(encrypted: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::open(&dir.path().join("cloud")).unwrap();
        let account: AccountId = "111111111111".parse().unwrap();
        let region: Region = "us-east-1".parse().unwrap();
        let volume: VolumeId = "vol-0000000000000000a".parse().unwrap();
        let key = encrypted.then(|| cmk(&sim, &account, &region, "11111111-2222-3333-4444-555555555555"));
        sim.create_instance(
            &account,
            &region,
            &"i-0000000000000000a".parse().unwrap(),
            &[SimVolume {
                id: volume.clone(),
                size_gib: 1,
                key,
            }],
            &Default::default(),
        )
        .unwrap();
        let root = sim.root_credentials(&account).unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let repo = Repository::init(backend, &Secret::KeyFile([7; 32])).unwrap();
        World {
            sim,
            account,
            region,
            volume,
            root,
            repo,
            dir,
        }
    }

    /// Writes one 512 KiB block filled with `fill` (0 writes zeros: the block is unwritten).
    fn write(&self, index: u64, fill: u8) {
        self.sim
            .write_volume(
                &self.account,
                &self.region,
                &self.volume,
                index * EBS_BLOCK_SIZE,
                &block(fill),
            )
            .unwrap();
    }

    /// The embedded cloud, its EBS direct APIs as `ebs` answers them.
    fn with_ebs(&self, ebs: &Arc<Tampered>) -> Cloud {
        Cloud {
            ebs: ebs.clone(),
            ..self.sim.cloud()
        }
    }

    fn snapshot(&self) -> SnapshotId {
        self.sim
            .create_snapshot(&self.root, &self.region, &self.volume, &[])
            .unwrap()
            .id
    }

    fn volume_digest(&self) -> (u32, String) {
        self.sim
            .volume_digest(&self.account, &self.region, &self.volume)
            .unwrap()
    }

    fn backup(
        &self,
        cloud: &Cloud,
        snapshot: &SnapshotId,
        parent: Option<&SnapshotId>,
    ) -> Result<bulwark_mover::BackupOutcome, DirectError> {
        let progress = Progress::default();
        backup_snapshot(
            cloud,
            &self.root,
            &self.region,
            snapshot,
            parent,
            &self.repo,
            self.volume.as_str(),
            &progress,
        )
    }

    fn restore(
        &self,
        cloud: &Cloud,
        point: &bulwark_repo::Id,
        key: Option<&str>,
    ) -> Result<SnapshotId, DirectError> {
        let progress = Progress::default();
        restore_to_snapshot(cloud, &self.root, &self.region, &self.repo, point, key, &progress)
    }

    /// The volume as it is now, byte for byte, read block by block from a fresh snapshot.
    fn volume_bytes(&self) -> Vec<u8> {
        let snap = self.snapshot();
        let mut out = vec![0u8; 1 << 30];
        let mut next = None;
        loop {
            let page = self
                .sim
                .list_snapshot_blocks(&self.root, &self.region, &snap, next.as_deref())
                .unwrap();
            for b in &page.blocks {
                let (data, _) = self
                    .sim
                    .get_snapshot_block(&self.root, &self.region, &snap, b)
                    .unwrap();
                let at = (b.index * EBS_BLOCK_SIZE) as usize;
                out[at..at + data.len()].copy_from_slice(&data);
            }
            next = page.next_token;
            if next.is_none() {
                return out;
            }
        }
    }

    /// Restores `point` into a sparse file; its bytes.
    fn restored_file(&self, point: &bulwark_repo::Id) -> Vec<u8> {
        let path = self.dir.path().join("restored.img");
        let size = self.repo.read_point(point).unwrap().size;
        let target = FileTarget::create(&path, size).unwrap();
        bulwark_mover::restore(&self.repo, point, &target, &Progress::default(), 2).unwrap();
        std::fs::read(&path).unwrap()
    }
}

/// A customer managed key whose policy lets the account's identities use it.
fn cmk(sim: &Sim, account: &AccountId, region: &Region, id: &str) -> String {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    });
    sim.create_key(account, region, id, &policy.to_string()).unwrap()
}

/// A 512 KiB block of `fill` bytes, all zeros for 0; not uniform otherwise, so that two fills
/// never compare equal by accident.
fn block(fill: u8) -> Vec<u8> {
    if fill == 0 {
        return vec![0; EBS_BLOCK_SIZE as usize];
    }
    (0..EBS_BLOCK_SIZE).map(|i| fill ^ (i % 251) as u8).collect()
}

/// Blocks written in the first tests.
const WRITTEN: &[(u64, u8)] = &[(0, 1), (1, 2), (5, 3), (100, 4), (2047, 5)];

fn world_with_data(encrypted: bool) -> World {
    let w = World::new(encrypted);
    for &(index, fill) in WRITTEN {
        w.write(index, fill);
    }
    w
}

// ---- backup and restore ----------------------------------------------------------------------

#[test]
fn a_full_backup_of_a_snapshot_reads_its_written_blocks_and_restores_identically() {
    let w = world_with_data(false);
    let snap = w.snapshot();
    let outcome = w.backup(&w.sim.cloud(), &snap, None).unwrap();
    assert_eq!(outcome.manifest.stats.blocks_read, WRITTEN.len() as u64);
    assert_eq!(outcome.manifest.size, 1 << 30);
    assert_eq!(outcome.manifest.source.kind, "snapshot");
    assert_eq!(outcome.manifest.source.name, snap.as_str());

    assert!(
        w.restored_file(&outcome.id) == w.volume_bytes(),
        "the restored file differs from the volume"
    );

    let restored = w.restore(&w.sim.cloud(), &outcome.id, None).unwrap();
    let (size, digest, key) = w.sim.snapshot_digest(&w.region, &restored).unwrap();
    assert_eq!((size, digest), w.volume_digest());
    assert_eq!(key, None);
    let info = w
        .sim
        .describe_snapshots(&w.root, &w.region, std::slice::from_ref(&restored))
        .unwrap();
    assert_eq!(info[0].state, "completed");
    assert!(info[0]
        .tags
        .contains(&Tag::new("bulwark:restore-point", outcome.id.to_hex())));
}

#[test]
fn an_incremental_backup_reads_only_the_changed_blocks_and_restores_identically() {
    let w = world_with_data(false);
    let first = w.snapshot();
    let full = w.backup(&w.sim.cloud(), &first, None).unwrap();

    w.write(1, 9); // changed
    w.write(7, 8); // new
    w.write(5, 0); // zeroed
    let second = w.snapshot();
    let incremental = w.backup(&w.sim.cloud(), &second, Some(&first)).unwrap();
    assert_eq!(incremental.manifest.stats.blocks_read, 3);
    assert_eq!(incremental.manifest.parent, Some(full.id));

    assert!(
        w.restored_file(&incremental.id) == w.volume_bytes(),
        "the restored file differs from the volume"
    );
    let restored = w.restore(&w.sim.cloud(), &incremental.id, None).unwrap();
    let (size, digest, _) = w.sim.snapshot_digest(&w.region, &restored).unwrap();
    assert_eq!((size, digest), w.volume_digest());
}

#[test]
fn an_incremental_backup_against_a_parent_that_is_not_the_latest_backup_is_refused() {
    let w = world_with_data(false);
    let first = w.snapshot();
    w.write(3, 3);
    let second = w.snapshot();
    // No backup yet: nothing to apply the changes to.
    let error = w.backup(&w.sim.cloud(), &second, Some(&first)).unwrap_err();
    assert!(matches!(error, DirectError::ParentMismatch { .. }), "{error}");
    // The latest backup is of `second`, not `first`.
    w.backup(&w.sim.cloud(), &second, None).unwrap();
    w.write(4, 4);
    let third = w.snapshot();
    let error = w.backup(&w.sim.cloud(), &third, Some(&first)).unwrap_err();
    assert!(matches!(error, DirectError::ParentMismatch { .. }), "{error}");
    assert!(error.to_string().contains("what to do"), "{error}");
    w.backup(&w.sim.cloud(), &third, Some(&second)).unwrap();
}

#[test]
fn an_encrypted_snapshot_backs_up_and_restores_into_a_snapshot_under_a_given_key() {
    let w = world_with_data(true);
    let snap = w.snapshot();
    let outcome = w.backup(&w.sim.cloud(), &snap, None).unwrap();
    let other = cmk(
        &w.sim,
        &w.account,
        &w.region,
        "99999999-8888-7777-6666-555555555555",
    );
    let restored = w.restore(&w.sim.cloud(), &outcome.id, Some(&other)).unwrap();
    let (size, digest, key) = w.sim.snapshot_digest(&w.region, &restored).unwrap();
    assert_eq!((size, digest), w.volume_digest());
    assert_eq!(key.as_deref(), Some(other.as_str()));
}

#[test]
fn listings_are_read_to_their_last_page() {
    let w = world_with_data(false);
    let tampered = Arc::new(Tampered::new(&w.sim, None, 2));
    let first = w.snapshot();
    let full = w.backup(&w.with_ebs(&tampered), &first, None).unwrap();
    assert_eq!(full.manifest.stats.blocks_read, WRITTEN.len() as u64);
    for i in 10..15 {
        w.write(i, 6);
    }
    let second = w.snapshot();
    let incremental = w.backup(&w.with_ebs(&tampered), &second, Some(&first)).unwrap();
    assert_eq!(incremental.manifest.stats.blocks_read, 5);
    assert!(
        w.restored_file(&incremental.id) == w.volume_bytes(),
        "the restored file differs from the volume"
    );
}

// ---- throttling and failures -------------------------------------------------------------

#[test]
fn throttling_of_block_calls_is_absorbed() {
    let w = world_with_data(false);
    let snap = w.snapshot();
    for action in ["ebs:GetSnapshotBlock", "ebs:PutSnapshotBlock"] {
        w.sim
            .inject(Fault::Throttle {
                action: action.parse().unwrap(),
                times: 5,
            })
            .unwrap();
    }
    let cloud = Arc::new(Tampered::new(&w.sim, None, usize::MAX));
    let outcome = w.backup(&w.with_ebs(&cloud), &snap, None).unwrap();
    let restored = w.restore(&w.with_ebs(&cloud), &outcome.id, None).unwrap();
    let (size, digest, _) = w.sim.snapshot_digest(&w.region, &restored).unwrap();
    assert_eq!((size, digest), w.volume_digest());
    assert_eq!(cloud.errors("ebs:GetSnapshotBlock", ErrorKind::Throttled), 5);
    assert_eq!(cloud.errors("ebs:PutSnapshotBlock", ErrorKind::Throttled), 5);
}

#[test]
fn throttling_that_lasts_fails_after_every_attempt_with_what_to_do() {
    let w = world_with_data(false);
    let snap = w.snapshot();
    w.sim
        .inject(Fault::Throttle {
            action: "ebs:ListSnapshotBlocks".parse().unwrap(),
            times: ATTEMPTS,
        })
        .unwrap();
    let error = w.backup(&w.sim.cloud(), &snap, None).unwrap_err();
    match &error {
        DirectError::Busy {
            action,
            attempts,
            last,
        } => {
            assert_eq!((action.as_str(), *attempts), ("ebs:ListSnapshotBlocks", ATTEMPTS));
            assert_eq!(last.kind, ErrorKind::Throttled);
        }
        other => panic!("expected the throttling to surface, got {other}"),
    }
    assert!(error.to_string().contains("what to do"), "{error}");
    assert!(w.repo.latest_point(w.volume.as_str()).unwrap().is_none());
}

#[test]
fn transient_failures_of_ebs_are_retried() {
    let w = world_with_data(false);
    let snap = w.snapshot();
    // Each call fails once: the listing and the snapshot's start and completion on their
    // first call (they are made once), a block call after one success.
    let faults = [
        ("ebs:ListSnapshotBlocks", 0),
        ("ebs:GetSnapshotBlock", 1),
        ("ebs:StartSnapshot", 0),
        ("ebs:PutSnapshotBlock", 1),
        ("ebs:CompleteSnapshot", 0),
        ("ec2:DescribeSnapshots", 0),
    ];
    for (action, skip) in faults {
        w.sim
            .inject(Fault::Fail {
                action: action.parse().unwrap(),
                skip,
                code: "InternalServerException".into(),
                kind: ErrorKind::Unavailable,
            })
            .unwrap();
    }
    let cloud = Arc::new(Tampered::new(&w.sim, None, usize::MAX));
    let outcome = w.backup(&w.with_ebs(&cloud), &snap, None).unwrap();
    let restored = w.restore(&w.with_ebs(&cloud), &outcome.id, None).unwrap();
    let (size, digest, _) = w.sim.snapshot_digest(&w.region, &restored).unwrap();
    assert_eq!((size, digest), w.volume_digest());
    for (action, _) in faults.iter().filter(|(a, _)| a.starts_with("ebs:")) {
        assert_eq!(cloud.errors(action, ErrorKind::Unavailable), 1, "{action}");
    }
    // The EC2 call (waiting for the written snapshot) failed too, and was retried.
    assert_eq!(w.sim.pending_faults().unwrap(), Vec::new());
}

#[test]
fn a_refused_block_write_fails_the_restore_and_deletes_the_unfinished_snapshot() {
    let w = world_with_data(false);
    let snap = w.snapshot();
    let outcome = w.backup(&w.sim.cloud(), &snap, None).unwrap();
    let before = w.sim.inventory();
    w.sim
        .inject(Fault::Fail {
            action: "ebs:PutSnapshotBlock".parse().unwrap(),
            skip: 2,
            code: "AccessDeniedException".into(),
            kind: ErrorKind::AccessDenied,
        })
        .unwrap();
    let error = w.restore(&w.sim.cloud(), &outcome.id, None).unwrap_err();
    match &error {
        DirectError::Cloud(e) => assert_eq!(e.code, "AccessDeniedException", "{error}"),
        other => panic!("expected the refusal, got {other}"),
    }
    assert!(error.to_string().contains("what to do"), "{error}");
    assert_eq!(w.sim.inventory().added_since(&before), Vec::<String>::new());
}

#[test]
fn a_block_that_does_not_match_its_checksum_is_refused_and_no_restore_point_is_written() {
    let w = world_with_data(false);
    let snap = w.snapshot();
    let tampered = Arc::new(Tampered::new(&w.sim, Some(5), usize::MAX));
    let error = w.backup(&w.with_ebs(&tampered), &snap, None).unwrap_err();
    match &error {
        DirectError::Checksum { snapshot, index, .. } => {
            assert_eq!((snapshot, *index), (&snap, 5), "{error}");
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(error.to_string().contains("what to do"), "{error}");
    assert!(w.repo.latest_point(w.volume.as_str()).unwrap().is_none());
}

#[test]
fn block_calls_are_made_many_at_a_time_whatever_the_movers_threads() {
    let w = World::new(false);
    for index in 0..400 {
        w.write(index, (index % 250 + 1) as u8);
    }
    let snap = w.snapshot();
    // At 100 ms a call, the quota (1000 per second) allows 100 calls in flight: as many as
    // the transfer keeps.
    let cloud = Arc::new(Tampered::slow(&w.sim, Duration::from_millis(100)));
    let outcome = w.backup(&w.with_ebs(&cloud), &snap, None).unwrap();
    assert_eq!(outcome.manifest.stats.blocks_read, 400);
    let gets = cloud.gets.most();
    assert!(
        (IN_FLIGHT / 2..=IN_FLIGHT).contains(&gets),
        "{gets} reads in flight at most"
    );

    let restored = w.restore(&w.with_ebs(&cloud), &outcome.id, None).unwrap();
    let puts = cloud.puts.most();
    assert!(
        (IN_FLIGHT / 2..=IN_FLIGHT).contains(&puts),
        "{puts} writes in flight at most"
    );
    let (size, digest, _) = w.sim.snapshot_digest(&w.region, &restored).unwrap();
    assert_eq!((size, digest), w.volume_digest());
}

// ---- the rate limiter ----------------------------------------------------------------------

#[test]
fn the_limiter_paces_requests_at_its_rate() {
    let limiter = RateLimiter::new(200.0);
    let start = Instant::now();
    for _ in 0..41 {
        limiter.acquire();
    }
    // 41 requests at 200/s, from an empty bucket: at least 200 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn the_limiter_halves_on_throttling_and_grows_back_additively_up_to_its_ceiling() {
    let limiter = RateLimiter::per_snapshot();
    assert_eq!(limiter.rate(), 1000.0);
    limiter.throttled();
    assert_eq!(limiter.rate(), 500.0);
    limiter.throttled();
    assert_eq!(limiter.rate(), 250.0);
    // A second's worth of successes (250) adds about 100 requests per second.
    for _ in 0..250 {
        limiter.succeeded();
    }
    assert!((330.0..=350.0).contains(&limiter.rate()), "{}", limiter.rate());
    for _ in 0..100_000 {
        limiter.succeeded();
    }
    assert_eq!(limiter.rate(), 1000.0);
    for _ in 0..100 {
        limiter.throttled();
    }
    assert!(limiter.rate() > 0.0);
}

// ---- a cloud that pages small and corrupts a block ----------------------------------------

/// The embedded cloud, with block listings served `page` blocks at a time and the data of
/// block `corrupt` altered on its way to the caller (its checksum left as EBS computed it).
/// Every error a call answers is kept, to see what the caller met and absorbed. Block calls
/// take `latency` more, and how many are in flight at once is counted.
struct Tampered {
    sim: Sim,
    corrupt: Option<u64>,
    page: usize,
    errors: Mutex<Vec<CloudError>>,
    latency: Duration,
    gets: InFlight,
    puts: InFlight,
}

/// Calls in flight now, and at most.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    /// Counts `call` in flight while it runs, `latency` longer than it takes.
    fn during<T>(&self, latency: Duration, call: impl FnOnce() -> T) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(latency);
        let out = call();
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

impl Tampered {
    fn new(sim: &Sim, corrupt: Option<u64>, page: usize) -> Self {
        Self {
            sim: sim.clone(),
            corrupt,
            page,
            errors: Mutex::new(Vec::new()),
            latency: Duration::ZERO,
            gets: InFlight::default(),
            puts: InFlight::default(),
        }
    }

    /// The same, with block calls taking `latency` more.
    fn slow(sim: &Sim, latency: Duration) -> Self {
        Self {
            latency,
            ..Self::new(sim, None, usize::MAX)
        }
    }

    /// Passes `result` on, keeping its error.
    fn note<T>(&self, result: CloudResult<T>) -> CloudResult<T> {
        if let Err(e) = &result {
            self.errors.lock().unwrap().push(e.clone());
        }
        result
    }

    /// How many errors of `kind` calls of `action` answered.
    fn errors(&self, action: &str, kind: ErrorKind) -> usize {
        let errors = self.errors.lock().unwrap();
        errors
            .iter()
            .filter(|e| e.action.as_str() == action && e.kind == kind)
            .count()
    }

    /// Serves a full listing (`list` answers its pages) a few blocks at a time; the token is
    /// where the next page starts.
    fn repage(
        &self,
        next_token: Option<&str>,
        mut list: impl FnMut(Option<&str>) -> CloudResult<BlockPage>,
    ) -> CloudResult<BlockPage> {
        let mut blocks = Vec::new();
        let mut next: Option<String> = None;
        let size = loop {
            let page = list(next.as_deref())?;
            blocks.extend(page.blocks);
            next = page.next_token;
            if next.is_none() {
                break page.volume_size_gib;
            }
        };
        let start: usize = next_token.map_or(0, |t| t.parse().unwrap());
        let end = start.saturating_add(self.page).min(blocks.len());
        Ok(BlockPage {
            blocks: blocks[start..end].to_vec(),
            volume_size_gib: size,
            next_token: (end < blocks.len()).then(|| end.to_string()),
        })
    }
}

impl Ebs for Tampered {
    fn list_snapshot_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        next_token: Option<&str>,
    ) -> CloudResult<BlockPage> {
        self.note(self.repage(next_token, |t| {
            self.sim.list_snapshot_blocks(who, region, snapshot, t)
        }))
    }

    fn list_changed_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        first: &SnapshotId,
        second: &SnapshotId,
        next_token: Option<&str>,
    ) -> CloudResult<BlockPage> {
        self.note(self.repage(next_token, |t| {
            self.sim.list_changed_blocks(who, region, first, second, t)
        }))
    }

    fn get_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        block: &BlockRef,
    ) -> CloudResult<(Vec<u8>, String)> {
        let (mut data, checksum) = self.gets.during(self.latency, || {
            self.note(self.sim.get_snapshot_block(who, region, snapshot, block))
        })?;
        if self.corrupt == Some(block.index) {
            data[1000] ^= 0x40;
        }
        Ok((data, checksum))
    }

    fn start_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        start: &StartSnapshot,
    ) -> CloudResult<SnapshotId> {
        self.note(self.sim.start_snapshot(who, region, start))
    }

    fn put_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        index: u64,
        data: &[u8],
        checksum: &str,
    ) -> CloudResult<()> {
        self.puts.during(self.latency, || {
            self.note(
                self.sim
                    .put_snapshot_block(who, region, snapshot, index, data, checksum),
            )
        })
    }

    fn complete_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        changed_blocks: u64,
        checksum: &str,
    ) -> CloudResult<()> {
        self.note(
            self.sim
                .complete_snapshot(who, region, snapshot, changed_blocks, checksum),
        )
    }
}
