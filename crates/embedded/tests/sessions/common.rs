//! The example estate made real, and checks shared by the session tests.

use std::time::Duration;

use bulwark_embedded::{all_operations, plans, DataSize, Embedded, Grants};
use bulwark_engine::journal::Target;
use bulwark_engine::{Engine, SessionReport};
use bulwark_model::{AccountId, Estate, Region, VolumeId};
use bulwark_plan::{Actor, Operation, Placement, RestoreSource};
use bulwark_sim::Inventory;

pub const WEB: &str = "i-0123456789abcdef0";
pub const DB: &str = "i-0fedcba9876543210";
pub const PROD: &str = "222222222222";
pub const DR: &str = "333333333333";
pub const US: &str = "us-east-1";
pub const EU: &str = "eu-west-1";

/// The example estate.
pub fn estate() -> Estate {
    let text = include_str!("../../../../examples/estate.toml");
    Estate::parse("examples/estate.toml", text).expect("the example estate parses")
}

/// A world built from the example estate, roles granted everything its plans need.
pub struct World {
    pub embedded: Embedded,
    pub _dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let estate = estate();
        let grants = Grants::from_plans(&estate, &plans(&estate, &all_operations(&estate)));
        Self::with_grants(&estate, &grants)
    }

    pub fn with_grants(estate: &Estate, grants: &Grants) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = Embedded::create(
            dir.path(),
            estate,
            grants,
            DataSize {
                bytes_per_volume: 6 << 20,
            },
        )
        .expect("the embedded estate builds");
        World { embedded, _dir: dir }
    }

    pub fn inventory(&self) -> Inventory {
        self.embedded.sim.inventory()
    }

    /// The content digest of a production volume.
    pub fn source(&self, account: &str, region: &str, volume: &VolumeId) -> String {
        let (account, region) = ids(account, region);
        self.embedded
            .sim
            .volume_digest(&account, &region, volume)
            .expect("source volume")
            .1
    }

    /// The restored volumes of a report, by the production volume they restore, with
    /// their account, digest and key.
    pub fn restored(&self, report: &SessionReport, account: &str) -> Vec<(String, String, Option<String>)> {
        let account: AccountId = account.parse().expect("account");
        report
            .kept
            .iter()
            .filter_map(|(name, target)| match target {
                Target::Volume(region, id) if name.starts_with("restored volume of ") => {
                    let of = name
                        .trim_start_matches("restored volume of ")
                        .split(' ')
                        .next()?
                        .to_owned();
                    let digest = self.embedded.sim.volume_digest(&account, region, id)?.1;
                    let key = self.embedded.sim.volume_key(&account, region, id);
                    Some((of, digest, key))
                }
                _ => None,
            })
            .collect()
    }
}

pub fn ids(account: &str, region: &str) -> (AccountId, Region) {
    (account.parse().expect("account"), region.parse().expect("region"))
}

/// Asserts that `after` holds nothing `before` did not, except lines matching `kept`.
pub fn assert_nothing_left(before: &Inventory, after: &Inventory, kept: &[&str]) {
    let left: Vec<String> = after
        .added_since(before)
        .into_iter()
        .filter(|r| !kept.iter().any(|k| r.contains(k)))
        .collect();
    assert!(
        left.is_empty(),
        "the session left resources behind:\n{}",
        left.join("\n")
    );
}

/// The repository as a worker opens it, with the bucket owner's credentials.
pub fn open_repository(world: &World) -> bulwark_repo::Repository {
    let embedded = &world.embedded;
    let repo = embedded
        .estate
        .repository
        .as_ref()
        .expect("the estate has a repository");
    let root = embedded
        .sim
        .root_credentials(repo.role.account())
        .expect("the bucket owner's credentials");
    let backend = embedded
        .sim
        .cloud()
        .s3
        .object_store(&root.into(), &repo.region, repo.bucket.as_str(), &repo.prefix)
        .expect("the repository bucket");
    let secret = bulwark_repo::Secret::from_key_file(embedded.repository_key.as_bytes(), "repository key")
        .expect("a 256-bit key");
    bulwark_repo::Repository::open(std::sync::Arc::from(backend), &secret).expect("the repository opens")
}

/// The image-level restore points in the repository.
pub fn restore_points(world: &World) -> usize {
    open_repository(world).point_ids().expect("restore points").len()
}

/// Opens the repository, reads every pack and checks every restore point; answers how many.
pub fn assert_repository_intact(world: &World) -> usize {
    let repo = open_repository(world);
    let report = bulwark_repo::verify(&repo, true, 2).expect("verify runs");
    assert!(
        report.is_clean(),
        "the repository is damaged: {:#?}\n{:#?}",
        report.problems,
        report.damaged_points
    );
    assert_eq!(report.points, repo.point_ids().expect("points").len());
    report.points
}

/// Short retry pauses and worker silence, so that failing sessions fail fast.
pub fn engine(world: &World) -> Engine {
    world
        .embedded
        .engine()
        .with_timing(Duration::from_millis(5), Duration::from_millis(300))
}

pub fn snapshot(instance: &str) -> Operation {
    Operation::Snapshot {
        instance: instance.parse().expect("instance"),
    }
}

pub fn backup(instance: &str, workers: Placement) -> Operation {
    Operation::Backup {
        instance: instance.parse().expect("instance"),
        workers: Some(workers),
        file_index: false,
    }
}

pub fn replicate(instance: &str, account: &str, region: &str) -> Operation {
    let (to_account, to_region) = ids(account, region);
    Operation::Replicate {
        instance: instance.parse().expect("instance"),
        to_account,
        to_region,
        target_key: None,
    }
}

pub fn restore(
    instance: &str,
    from: RestoreSource,
    account: &str,
    region: &str,
    workers: Option<Placement>,
) -> Operation {
    let (to_account, to_region) = ids(account, region);
    Operation::Restore {
        instance: instance.parse().expect("instance"),
        from,
        to_account,
        to_region,
        target_key: None,
        workers,
        launch: Default::default(),
    }
}

/// Rewrites the first `bytes` of every volume of `instance` with bytes they never held, so
/// that its next backup has that much to read.
pub fn change_volumes(world: &World, instance: &str, bytes: usize) {
    static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = instance.parse().expect("instance id");
    let instance = world.embedded.estate.instance(&id).expect("instance").clone();
    for (n, volume) in instance.volumes.iter().enumerate() {
        // A different byte string per round and volume: nothing deduplicates it.
        let mut state = round.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (n as u64 + 1);
        let data: Vec<u8> = (0..bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        world
            .embedded
            .sim
            .write_volume(&instance.account, &instance.region, &volume.id, 0, &data)
            .expect("the volume is written");
    }
}

/// Asserts that the world holds exactly what it held before.
pub fn assert_unchanged(before: &Inventory, after: &Inventory, what: &str) {
    let added = after.added_since(before);
    let removed = before.added_since(after);
    assert!(
        added.is_empty() && removed.is_empty(),
        "{what}:\nleft behind:\n  {}\nremoved:\n  {}",
        added.join("\n  "),
        removed.join("\n  ")
    );
}

/// Asserts that every session journal is closed: recovery finds nothing to do.
pub fn assert_journals_closed(world: &World, what: &str) {
    let store = bulwark_engine::FileStore::new(&world.embedded.dir().join("appliance"));
    let open = bulwark_engine::StateStore::unfinished(&store).expect("the journals read");
    assert!(open.is_empty(), "{what}: unclosed journals {open:?}");
    let recovered = engine(world).recover().expect("recovery runs");
    assert!(recovered.is_empty(), "{what}: recovery found {recovered:#?}");
}

/// Whether the engine itself makes a step's call (not the worker, not the repository role).
pub fn engine_calls(step: &bulwark_plan::Step) -> bool {
    !matches!(step.actor, Actor::Worker(_)) && !step.action().as_str().starts_with("s3:")
}
