//! A batch of calls on the embedded cloud saves the world once, at its end: nothing of it is
//! on disk before, all of it after, for every process that opens the directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bulwark_model::{AccountId, InstanceId, Region};
use bulwark_sim::{Sim, SimError, SimVolume};

#[test]
fn a_batch_saves_once_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::open(dir.path()).unwrap();
    let account: AccountId = "222222222222".parse().unwrap();
    let region: Region = "us-east-1".parse().unwrap();
    sim.root_credentials(&account).unwrap();
    let state = dir.path().join("state.json");
    let before = std::fs::read(&state).unwrap();
    sim.batch(|| {
        for i in 0..200u64 {
            let id: InstanceId = format!("i-{i:017x}").parse().unwrap();
            let volume = SimVolume {
                id: format!("vol-{i:017x}").parse().unwrap(),
                size_gib: 1,
                key: None,
            };
            sim.create_instance(&account, &region, &id, &[volume], &BTreeMap::new())?;
        }
        assert_eq!(std::fs::read(&state).unwrap(), before, "saved inside the batch");
        Ok::<_, SimError>(())
    })
    .unwrap();
    // Another process (another Sim on the directory) sees every instance.
    let other = Sim::open(dir.path()).unwrap();
    let instances = other
        .inventory()
        .resources
        .iter()
        .filter(|r| r.starts_with("instance "))
        .count();
    assert_eq!(instances, 200);
    // And calls outside a batch save as before.
    let one: InstanceId = "i-0ffffffffffffffff".parse().unwrap();
    sim.create_instance(&account, &region, &one, &[], &BTreeMap::new())
        .unwrap();
    assert_eq!(
        Sim::open(dir.path())
            .unwrap()
            .inventory()
            .resources
            .iter()
            .filter(|r| r.starts_with("instance "))
            .count(),
        201
    );
}
