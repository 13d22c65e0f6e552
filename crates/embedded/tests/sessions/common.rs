//! The example estate made real, and checks shared by the session tests.

use std::path::PathBuf;

use bulwark_embedded::{all_operations, plans, DataSize, Embedded, Grants};
use bulwark_engine::journal::Target;
use bulwark_engine::SessionReport;
use bulwark_model::{AccountId, Estate, Region, VolumeId};
use bulwark_sim::Inventory;

pub const WEB: &str = "i-0123456789abcdef0";
pub const DB: &str = "i-0fedcba9876543210";
pub const PROD: &str = "222222222222";
pub const DR: &str = "333333333333";
pub const US: &str = "us-east-1";
pub const EU: &str = "eu-west-1";

/// The example estate.
pub fn estate() -> Estate {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/estate.toml");
    let text = std::fs::read_to_string(&path).expect("examples/estate.toml");
    Estate::parse("examples/estate.toml", &text).expect("the example estate parses")
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
