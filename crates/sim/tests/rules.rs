//! The embedded cloud enforces the AWS rules of `reference/aws-rules.md` through the `Cloud`
//! trait, with AWS's error codes, and holds real bytes. One rule per test.
//!
//! (Over 800 lines: one test per AWS rule the embedded cloud enforces; each stands alone.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bulwark_cloud::{
    CopySnapshot, CreateVolume, Ebs, Ec2, ErrorKind, Iam, Kms, RunInstance, StartSnapshot, Sts,
    EBS_BLOCK_SIZE,
};
use bulwark_model::{Action, VolumeType};
use bulwark_sim::{Fault, Sim};
use common::*;
use serde_json::json;

const KEY_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const KEY_A_WEST: &str = "aaaaaaaa-0000-4000-8000-0000000000a2";

/// A world where A holds a CMK in us-east-1 whose key policy lets B's role `Restore` use it,
/// and an instance with one volume under that key (`vol-000000a1`). Returns the key ARN.
fn cmk_world(w: &World) -> String {
    let restore = role_arn(&w.b, "Restore").to_string();
    let policy = key_policy(&w.a, &[allow_use(&restore), allow_grants(&restore)]);
    let key = w.cmk(&w.a, &w.east, KEY_A, &policy);
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", Some(&key))]);
    key
}

// ---- 1. sharing --------------------------------------------------------------------------

#[test]
fn snapshot_under_aws_ebs_cannot_be_shared() {
    let w = World::new();
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", Some("aws/ebs"))]);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let error = expect_error(
        w.sim
            .modify_snapshot_sharing(&w.root(&w.a), &w.east, &snap, std::slice::from_ref(&w.b), &[]),
        "OperationNotPermitted",
        ErrorKind::NotPermitted,
    );
    assert_eq!(
        error.message,
        "Encrypted snapshots with EBS default key cannot be shared"
    );
    let info = w.sim.describe_snapshots(&w.root(&w.a), &w.east, &[snap]).unwrap();
    assert!(info[0].shared_with.is_empty());
}

#[test]
fn snapshot_under_a_cmk_can_be_shared() {
    let w = World::new();
    cmk_world(&w);
    let snap = w.shared_snapshot("vol-000000a1");
    let info = w
        .sim
        .describe_snapshots(&w.root(&w.a), &w.east, std::slice::from_ref(&snap))
        .unwrap();
    assert_eq!(info[0].shared_with, vec![w.b.clone()]);
    // B sees it now.
    w.sim.describe_snapshots(&w.root(&w.b), &w.east, &[snap]).unwrap();
}

// ---- 2. cross-account use of a shared CMK snapshot ---------------------------------------

#[test]
fn shared_cmk_snapshot_needs_the_key_policy_and_the_iam_policy() {
    let w = World::new();
    let key = cmk_world(&w);
    let snap = w.shared_snapshot("vol-000000a1");

    // The key policy allows B's role, but the role's IAM policy has no KMS permission.
    let restore = w.role(&w.b, "Restore", &[("ec2", ec2_all())]);
    let error = expect_error(
        w.sim.create_volume(&restore, &w.east, &from_snapshot(&snap)),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    assert!(error.message.contains(&key), "{error}");

    // The role's IAM policy allows, but the key policy names only A.
    w.sim
        .update_key(&key, Some(&key_policy(&w.a, &[]).to_string()), None)
        .unwrap();
    let restore = w.role(&w.b, "Restore", &[("ec2", ec2_all()), ("kms", kms_for_ebs(&key))]);
    expect_error(
        w.sim.create_volume(&restore, &w.east, &from_snapshot(&snap)),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );

    // Both allow.
    let role = role_arn(&w.b, "Restore").to_string();
    let both = key_policy(&w.a, &[allow_use(&role), allow_grants(&role)]);
    w.sim.update_key(&key, Some(&both.to_string()), None).unwrap();
    w.sim
        .create_volume(&restore, &w.east, &from_snapshot(&snap))
        .unwrap();
}

#[test]
fn volume_of_a_shared_snapshot_gets_the_callers_default_key() {
    let w = World::new();
    let key = cmk_world(&w);
    let snap = w.shared_snapshot("vol-000000a1");
    let restore = w.role(&w.b, "Restore", &[("ec2", ec2_all()), ("kms", kms_for_ebs(&key))]);
    let created = w
        .sim
        .create_volume(&restore, &w.east, &from_snapshot(&snap))
        .unwrap();
    let b_default = w.sim.ebs_default_key(&w.root(&w.b), &w.east).unwrap();
    assert!(b_default.starts_with("arn:aws:kms:us-east-1:222222222222:key/"));
    assert_eq!(w.volume_key(&restore, &w.east, &created.id), Some(b_default));
}

#[test]
fn volume_of_an_own_snapshot_keeps_the_snapshots_key() {
    let w = World::new();
    let key = cmk_world(&w);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let root = w.root(&w.a);
    let created = w
        .sim
        .create_volume(&root, &w.east, &from_snapshot(&snap))
        .unwrap();
    assert_eq!(w.volume_key(&root, &w.east, &created.id), Some(key.clone()));
    // Which is not the account's default key.
    assert_ne!(w.sim.ebs_default_key(&root, &w.east).unwrap(), key);
}

#[test]
fn copy_of_a_shared_cmk_snapshot_needs_both_policies_and_gets_the_callers_default_key() {
    let w = World::new();
    let key = cmk_world(&w);
    let snap = w.shared_snapshot("vol-000000a1");
    let copy = CopySnapshot {
        source_region: w.east.clone(),
        source: snap,
        encrypted: false,
        kms_key_id: None,
        tags: Vec::new(),
    };
    let restore = w.role(&w.b, "Restore", &[("ec2", ec2_all())]);
    expect_error(
        w.sim.copy_snapshot(&restore, &w.east, &copy),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    let restore = w.role(&w.b, "Restore", &[("ec2", ec2_all()), ("kms", kms_for_ebs(&key))]);
    let copied = w.sim.copy_snapshot(&restore, &w.east, &copy).unwrap();
    let b_default = w.sim.ebs_default_key(&w.root(&w.b), &w.east).unwrap();
    assert_eq!(w.snapshot_key(&restore, &w.east, &copied), Some(b_default));
}

#[test]
fn sharing_changes_at_most_500_accounts_per_call() {
    let w = World::new();
    cmk_world(&w);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let many: Vec<_> = (0..501)
        .map(|i| account(&format!("{:012}", 300_000_000_000u64 + i)))
        .collect();
    expect_error(
        w.sim
            .modify_snapshot_sharing(&w.root(&w.a), &w.east, &snap, &many, &[]),
        "InvalidParameterValue",
        ErrorKind::Invalid,
    );
    w.sim
        .modify_snapshot_sharing(&w.root(&w.a), &w.east, &snap, &many[..500], &[])
        .unwrap();
}

// ---- 3. aws/ebs stays in its account -----------------------------------------------------

#[test]
fn aws_ebs_of_one_account_is_never_usable_by_another() {
    let w = World::new();
    let a_ebs = w.sim.ebs_default_key(&w.root(&w.a), &w.east).unwrap();
    let everything = allow(&["ec2:*", "kms:*"], "*");
    let b_role = w.role(&w.b, "Anything", &[("all", everything)]);
    let with_a_ebs = CreateVolume {
        size_gib: Some(1),
        encrypted: true,
        kms_key_id: Some(a_ebs.clone()),
        ..CreateVolume::default()
    };
    expect_error(
        w.sim.create_volume(&b_role, &w.east, &with_a_ebs),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    expect_error(
        w.sim.create_volume(&w.root(&w.b), &w.east, &with_a_ebs),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    expect_error(
        w.sim.describe_key(
            &b_role,
            &w.east,
            "arn:aws:kms:us-east-1:111111111111:alias/aws/ebs",
        ),
        "AccessDeniedException",
        ErrorKind::AccessDenied,
    );
    expect_error(
        w.sim.generate_data_key(&b_role, &w.east, &a_ebs),
        "AccessDeniedException",
        ErrorKind::AccessDenied,
    );
    // A itself may use it.
    w.sim.create_volume(&w.root(&w.a), &w.east, &with_a_ebs).unwrap();
}

// ---- 4. CopySnapshot ---------------------------------------------------------------------

fn copy_of(w: &World, snap: &bulwark_model::SnapshotId) -> CopySnapshot {
    CopySnapshot {
        source_region: w.east.clone(),
        source: snap.clone(),
        encrypted: false,
        kms_key_id: None,
        tags: Vec::new(),
    }
}

#[test]
fn copy_with_a_key_requires_encrypted() {
    let w = World::new();
    let key = cmk_world(&w);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let copy = CopySnapshot {
        kms_key_id: Some(key),
        ..copy_of(&w, &snap)
    };
    expect_error(
        w.sim.copy_snapshot(&w.root(&w.a), &w.east, &copy),
        "InvalidParameterDependency",
        ErrorKind::Invalid,
    );
}

#[test]
fn copy_into_another_region_gets_the_destination_default_key() {
    let w = World::new();
    let key = cmk_world(&w);
    let west_key = w.cmk(&w.a, &w.west, KEY_A_WEST, &key_policy(&w.a, &[]));
    w.sim
        .set_ebs_defaults(&w.a, &w.west, Some(&west_key), false)
        .unwrap();
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let root = w.root(&w.a);
    let copy = w.sim.copy_snapshot(&root, &w.west, &copy_of(&w, &snap)).unwrap();
    assert_eq!(w.snapshot_key(&root, &w.west, &copy), Some(west_key.clone()));
    assert_ne!(Some(key), Some(west_key));
}

#[test]
fn copy_with_a_key_of_another_region_fails() {
    let w = World::new();
    let key = cmk_world(&w);
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let copy = CopySnapshot {
        encrypted: true,
        kms_key_id: Some(key),
        ..copy_of(&w, &snap)
    };
    let error = w.sim.copy_snapshot(&w.root(&w.a), &w.west, &copy).unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::Invalid | ErrorKind::NotFound),
        "{error}"
    );
}

#[test]
fn encryption_by_default_encrypts_a_copy_of_an_unencrypted_snapshot() {
    let w = World::new();
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", None)]);
    w.sim.set_ebs_defaults(&w.a, &w.west, None, true).unwrap();
    let snap = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let root = w.root(&w.a);
    assert_eq!(w.snapshot_key(&root, &w.east, &snap), None);
    let copy = w.sim.copy_snapshot(&root, &w.west, &copy_of(&w, &snap)).unwrap();
    let west_default = w.sim.ebs_default_key(&root, &w.west).unwrap();
    assert!(west_default.starts_with("arn:aws:kms:eu-west-1:111111111111:key/"));
    assert_eq!(w.snapshot_key(&root, &w.west, &copy), Some(west_default));
    // Without encryption by default, the copy stays unencrypted.
    let plain = w.sim.copy_snapshot(&root, &w.east, &copy_of(&w, &snap)).unwrap();
    assert_eq!(w.snapshot_key(&root, &w.east, &plain), None);
}

// ---- 5. AssumeRole -----------------------------------------------------------------------

/// B's role `BulwarkAccess` trusts account A with an external id; A's role `Appliance` may
/// assume it. Returns the Appliance session.
fn access_world(w: &World) -> bulwark_cloud::Credentials {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "bulwark-7f3a"}}
        }]
    });
    w.put_role(&w.b, "BulwarkAccess", &trust, &[("ec2", ec2_all())]);
    let target = role_arn(&w.b, "BulwarkAccess").to_string();
    w.role(
        &w.a,
        "Appliance",
        &[("assume", allow(&["sts:AssumeRole"], &target))],
    )
}

#[test]
fn assume_role_requires_the_external_id() {
    let w = World::new();
    let appliance = access_world(&w);
    let target = role_arn(&w.b, "BulwarkAccess");
    expect_error(
        w.sim.assume_role(&appliance, &target, "s1", None),
        "AccessDenied",
        ErrorKind::AccessDenied,
    );
    expect_error(
        w.sim.assume_role(&appliance, &target, "s1", Some("other")),
        "AccessDenied",
        ErrorKind::AccessDenied,
    );
    let session = w
        .sim
        .assume_role(&appliance, &target, "s1", Some("bulwark-7f3a"))
        .unwrap();
    let me = w.sim.caller_identity(&session).unwrap();
    assert_eq!(me.account, w.b);
    assert_eq!(me.arn, "arn:aws:sts::222222222222:assumed-role/BulwarkAccess/s1");
}

#[test]
fn cross_account_assume_role_needs_the_callers_identity_policy() {
    let w = World::new();
    access_world(&w);
    let bare = w.role(&w.a, "Bare", &[("ec2", ec2_all())]);
    expect_error(
        w.sim.assume_role(
            &bare,
            &role_arn(&w.b, "BulwarkAccess"),
            "s1",
            Some("bulwark-7f3a"),
        ),
        "AccessDenied",
        ErrorKind::AccessDenied,
    );
}

#[test]
fn assume_role_requires_the_trust_policy_to_name_the_caller() {
    let w = World::new();
    access_world(&w);
    let target = role_arn(&w.b, "BulwarkAccess").to_string();
    // A role of B itself, allowed by its identity policy, is not named by the trust policy.
    let local = w.role(&w.b, "Local", &[("assume", allow(&["sts:AssumeRole"], &target))]);
    expect_error(
        w.sim.assume_role(
            &local,
            &role_arn(&w.b, "BulwarkAccess"),
            "s1",
            Some("bulwark-7f3a"),
        ),
        "AccessDenied",
        ErrorKind::AccessDenied,
    );
}

// ---- 6. explicit deny ------------------------------------------------------------------

#[test]
fn explicit_deny_in_an_inline_policy_beats_an_allow() {
    let w = World::new();
    let deny = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "ec2:CreateVolume", "Resource": "*"}]
    });
    let role = w.role(&w.a, "Operator", &[("allow", ec2_all()), ("deny", deny)]);
    let plain = CreateVolume {
        size_gib: Some(1),
        ..CreateVolume::default()
    };
    expect_error(
        w.sim.create_volume(&role, &w.east, &plain),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    // The allow still covers the rest.
    w.sim.ebs_encryption_by_default(&role, &w.east).unwrap();
    // Without the deny, the same call works.
    let role = w.role(&w.a, "Operator", &[("allow", ec2_all())]);
    w.sim.create_volume(&role, &w.east, &plain).unwrap();
}

#[test]
fn volume_types_take_the_performance_aws_allows_them() {
    let w = World::new();
    let root = w.root(&w.a);
    let sized = |size, t: Option<VolumeType>, iops, throughput| CreateVolume {
        size_gib: Some(size),
        volume_type: t,
        iops,
        throughput,
        ..CreateVolume::default()
    };
    let volume = |t, iops, throughput| sized(200, t, iops, throughput);
    let made = |v: &CreateVolume| w.sim.create_volume(&root, &w.east, v).unwrap();
    // The API's default is gp2, whose IOPS follow the size; gp3's are provisioned.
    let gp2 = made(&volume(None, None, None)).performance.unwrap();
    assert_eq!(
        (gp2.volume_type, gp2.iops, gp2.throughput),
        (VolumeType::Gp2, Some(600), None)
    );
    let made_gp3 = made(&volume(Some(VolumeType::Gp3), Some(6_000), None));
    let made_io2 = made(&volume(Some(VolumeType::Io2), Some(20_000), None));
    let (gp3, io2) = (made_gp3.performance.unwrap(), made_io2.performance.unwrap());
    assert_eq!((gp3.iops, gp3.throughput), (Some(6_000), Some(125)));
    let described = w
        .sim
        .describe_volumes(&root, &w.east, &[made_gp3.id, made_io2.id])
        .unwrap()
        .into_iter()
        .map(|v| v.performance.unwrap())
        .collect::<Vec<_>>();
    assert_eq!(described, vec![gp3, io2]);
    for (v, code) in [
        (volume(Some(VolumeType::Io1), None, None), "MissingParameter"),
        (volume(None, Some(3_000), None), "InvalidParameterCombination"),
        (
            volume(Some(VolumeType::Io2), Some(3_000), Some(500)),
            "InvalidParameterCombination",
        ),
        (
            volume(Some(VolumeType::Gp3), Some(100_000), None),
            "InvalidParameterValue",
        ),
        (
            sized(2_000, Some(VolumeType::Standard), None, None),
            "InvalidParameterValue",
        ),
    ] {
        expect_error(w.sim.create_volume(&root, &w.east, &v), code, ErrorKind::Invalid);
    }
}

// ---- 7. RunInstances and instance profiles -----------------------------------------------

fn ec2_trust() -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

#[test]
fn fresh_instance_profile_is_refused_once_then_accepted() {
    let w = World::new();
    let root = w.root(&w.a);
    let role = w
        .sim
        .create_role(&root, "/", "Worker", &ec2_trust().to_string(), &[])
        .unwrap();
    let profile = w.sim.create_instance_profile(&root, "/", "Worker").unwrap();
    w.sim
        .add_role_to_instance_profile(&root, &profile, &role)
        .unwrap();
    let run = RunInstance {
        instance_profile: Some(profile.clone()),
        instance_type: "t3.micro".into(),
        ..RunInstance::default()
    };
    let error = expect_error(
        w.sim.run_instance(&root, &w.east, &run),
        "InvalidParameterValue",
        ErrorKind::Propagating,
    );
    assert!(error.message.contains("Invalid IAM Instance Profile"), "{error}");
    let info = w.sim.run_instance(&root, &w.east, &run).unwrap();
    assert_eq!(info.instance_profile, Some(profile));
}

#[test]
fn run_instance_with_a_profile_requires_pass_role() {
    let w = World::new();
    w.put_role(&w.a, "Worker", &ec2_trust(), &[]);
    w.sim.put_instance_profile(&w.a, "Worker", "Worker").unwrap();
    let run = RunInstance {
        instance_profile: Some("arn:aws:iam::111111111111:instance-profile/Worker".into()),
        instance_type: "t3.micro".into(),
        ..RunInstance::default()
    };
    let launcher = w.role(&w.a, "Launcher", &[("ec2", ec2_all())]);
    let error = expect_error(
        w.sim.run_instance(&launcher, &w.east, &run),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    assert!(error.message.contains("iam:PassRole"), "{error}");
    let worker = role_arn(&w.a, "Worker").to_string();
    let launcher = w.role(
        &w.a,
        "Launcher",
        &[("ec2", ec2_all()), ("pass", allow(&["iam:PassRole"], &worker))],
    );
    w.sim.run_instance(&launcher, &w.east, &run).unwrap();
}

// ---- 8. kms:CreateGrant for EBS ----------------------------------------------------------

/// A's role `Operator` may use A's CMK through the key policy, which names it directly, but
/// not create grants. Returns the key ARN and an available volume under it, and an instance.
fn grant_world(w: &World) -> (String, bulwark_model::VolumeId) {
    let operator = role_arn(&w.a, "Operator").to_string();
    let key = w.cmk(&w.a, &w.east, KEY_A, &key_policy(&w.a, &[allow_use(&operator)]));
    w.instance(&w.a, &w.east, "i-000000a1", &[]);
    let encrypted = CreateVolume {
        size_gib: Some(1),
        encrypted: true,
        kms_key_id: Some(key.clone()),
        ..CreateVolume::default()
    };
    let vol = w
        .sim
        .create_volume(&w.root(&w.a), &w.east, &encrypted)
        .unwrap()
        .id;
    (key, vol)
}

fn encrypted_with(key: &str) -> CreateVolume {
    CreateVolume {
        size_gib: Some(1),
        encrypted: true,
        kms_key_id: Some(key.to_owned()),
        ..CreateVolume::default()
    }
}

#[test]
fn ebs_needs_create_grant_in_the_key_policy() {
    let w = World::new();
    let (key, vol) = grant_world(&w);
    let op = w.role(&w.a, "Operator", &[("ec2", ec2_all())]);
    let i = instance("i-000000a1");
    let error = expect_error(
        w.sim.create_volume(&op, &w.east, &encrypted_with(&key)),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    assert!(error.message.contains("kms:CreateGrant"), "{error}");
    let error = expect_error(
        w.sim.attach_volume(&op, &w.east, &vol, &i, "/dev/sdf"),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    assert!(error.message.contains("kms:CreateGrant"), "{error}");

    // CreateGrant for AWS resources only, as AWS recommends: EBS's grants qualify.
    let operator = role_arn(&w.a, "Operator").to_string();
    let policy = key_policy(&w.a, &[allow_use(&operator), allow_grants(&operator)]);
    w.sim.update_key(&key, Some(&policy.to_string()), None).unwrap();
    w.sim.create_volume(&op, &w.east, &encrypted_with(&key)).unwrap();
    w.sim.attach_volume(&op, &w.east, &vol, &i, "/dev/sdf").unwrap();
}

#[test]
fn ebs_needs_create_grant_in_the_iam_policy() {
    let w = World::new();
    // The key policy delegates to A's IAM policies.
    let key = w.cmk(&w.a, &w.east, KEY_A, &key_policy(&w.a, &[]));
    let use_only = allow(KEY_USE, &key);
    let op = w.role(&w.a, "Operator", &[("ec2", ec2_all()), ("kms", use_only)]);
    let error = expect_error(
        w.sim.create_volume(&op, &w.east, &encrypted_with(&key)),
        "UnauthorizedOperation",
        ErrorKind::AccessDenied,
    );
    assert!(error.message.contains("kms:CreateGrant"), "{error}");

    let op = w.role(
        &w.a,
        "Operator",
        &[("ec2", ec2_all()), ("kms", kms_for_ebs(&key))],
    );
    let vol = w
        .sim
        .create_volume(&op, &w.east, &encrypted_with(&key))
        .unwrap()
        .id;
    w.instance(&w.a, &w.east, "i-000000a1", &[]);
    w.sim
        .attach_volume(&op, &w.east, &vol, &instance("i-000000a1"), "/dev/sdf")
        .unwrap();
    let grants = w.sim.list_grants(&w.root(&w.a), &w.east, &key).unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
}

// ---- 9. real bytes -----------------------------------------------------------------------

#[test]
fn a_volume_restored_in_another_account_holds_the_same_bytes() {
    let w = World::new();
    let key = cmk_world(&w);
    w.write(&w.a, &w.east, "vol-000000a1", &[(0, 1), (3, 2), (100, 3)]);
    let snap = w.shared_snapshot("vol-000000a1");
    let restore = w.role(&w.b, "Restore", &[("ec2", ec2_all()), ("kms", kms_for_ebs(&key))]);
    let copy = w
        .sim
        .create_volume(&restore, &w.east, &from_snapshot(&snap))
        .unwrap();
    let original = w
        .sim
        .volume_digest(&w.a, &w.east, &volume("vol-000000a1"))
        .unwrap();
    let restored = w.sim.volume_digest(&w.b, &w.east, &copy.id).unwrap();
    assert_eq!(original, restored);
    // A different content has a different digest.
    w.write(&w.a, &w.east, "vol-000000a1", &[(3, 9)]);
    let changed = w
        .sim
        .volume_digest(&w.a, &w.east, &volume("vol-000000a1"))
        .unwrap();
    assert_ne!(changed, restored);
}

#[test]
fn list_changed_blocks_returns_exactly_the_changed_blocks() {
    let w = World::new();
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", None)]);
    w.write(&w.a, &w.east, "vol-000000a1", &[(0, 1), (1, 2), (2, 3)]);
    let first = w.snapshot(&w.a, &w.east, "vol-000000a1");
    w.write(&w.a, &w.east, "vol-000000a1", &[(1, 7), (5, 8)]);
    let second = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let page = w
        .sim
        .list_changed_blocks(&w.root(&w.a), &w.east, &first, &second, None)
        .unwrap();
    let indexes: Vec<u64> = page.blocks.iter().map(|b| b.index).collect();
    assert_eq!(indexes, vec![1, 5]);
    assert_eq!(page.volume_size_gib, 1);
    assert_eq!(page.next_token, None);
    // The changed block reads back with its new content.
    let (data, _) = w
        .sim
        .get_snapshot_block(&w.root(&w.a), &w.east, &second, &page.blocks[1])
        .unwrap();
    assert_eq!(data, block(8));
}

#[test]
fn list_changed_blocks_of_unrelated_snapshots_is_a_validation_error() {
    let w = World::new();
    w.instance(
        &w.a,
        &w.east,
        "i-000000a1",
        &[("vol-000000a1", None), ("vol-000000a2", None)],
    );
    w.write(&w.a, &w.east, "vol-000000a1", &[(0, 1)]);
    w.write(&w.a, &w.east, "vol-000000a2", &[(0, 1)]);
    let one = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let other = w.snapshot(&w.a, &w.east, "vol-000000a2");
    let error = expect_error(
        w.sim
            .list_changed_blocks(&w.root(&w.a), &w.east, &one, &other, None),
        "ValidationException",
        ErrorKind::Invalid,
    );
    assert!(error.message.contains("UNRELATED_SNAPSHOTS"), "{error}");
}

// ---- 10. EBS direct APIs -----------------------------------------------------------------

#[test]
fn start_snapshot_rejects_an_alias_as_kms_key_arn() {
    let w = World::new();
    let start = StartSnapshot {
        volume_size_gib: 1,
        encrypted: true,
        kms_key_arn: Some("arn:aws:kms:us-east-1:111111111111:alias/backup".into()),
        ..StartSnapshot::default()
    };
    expect_error(
        w.sim.start_snapshot(&w.root(&w.a), &w.east, &start),
        "ValidationException",
        ErrorKind::Invalid,
    );
}

#[test]
fn start_snapshot_rejects_a_key_that_does_not_exist_or_is_in_another_region() {
    let w = World::new();
    let key = w.cmk(&w.a, &w.east, KEY_A, &key_policy(&w.a, &[]));
    let missing = "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-4000-8000-000000000000";
    for (region, arn) in [(&w.east, missing), (&w.west, key.as_str())] {
        let start = StartSnapshot {
            volume_size_gib: 1,
            encrypted: true,
            kms_key_arn: Some(arn.to_owned()),
            ..StartSnapshot::default()
        };
        let error = expect_error(
            w.sim.start_snapshot(&w.root(&w.a), region, &start),
            "ValidationException",
            ErrorKind::Invalid,
        );
        assert!(error.message.contains("INVALID_CUSTOMER_KEY"), "{error}");
    }
}

#[test]
fn start_snapshot_with_a_key_the_caller_may_not_use_is_denied() {
    let w = World::new();
    let key = w.cmk(&w.a, &w.east, KEY_A, &key_policy(&w.a, &[]));
    let writer = w.role(&w.a, "Writer", &[("ebs", allow(&["ebs:*"], "*"))]);
    let start = StartSnapshot {
        volume_size_gib: 1,
        encrypted: true,
        kms_key_arn: Some(key.clone()),
        ..StartSnapshot::default()
    };
    let error = expect_error(
        w.sim.start_snapshot(&writer, &w.east, &start),
        "AccessDeniedException",
        ErrorKind::AccessDenied,
    );
    assert!(error.message.contains("DEPENDENCY_ACCESS_DENIED"), "{error}");
    let writer = w.role(
        &w.a,
        "Writer",
        &[("ebs", allow(&["ebs:*"], "*")), ("kms", allow(&["kms:*"], &key))],
    );
    let snap = w.sim.start_snapshot(&writer, &w.east, &start).unwrap();
    assert_eq!(w.snapshot_key(&w.root(&w.a), &w.east, &snap), Some(key));
}

#[test]
fn a_volume_under_a_disabled_key_cannot_be_created() {
    let w = World::new();
    let key = w.cmk(&w.a, &w.east, KEY_A, &key_policy(&w.a, &[]));
    w.sim.update_key(&key, None, Some("Disabled")).unwrap();
    let encrypted = CreateVolume {
        size_gib: Some(1),
        encrypted: true,
        kms_key_id: Some(key),
        ..CreateVolume::default()
    };
    let error = w
        .sim
        .create_volume(&w.root(&w.a), &w.east, &encrypted)
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotPermitted, "{error}");
}

#[test]
fn start_snapshot_rejects_encrypted_with_a_parent() {
    let w = World::new();
    w.instance(&w.a, &w.east, "i-000000a1", &[("vol-000000a1", None)]);
    let parent = w.snapshot(&w.a, &w.east, "vol-000000a1");
    let start = StartSnapshot {
        volume_size_gib: 1,
        parent: Some(parent),
        encrypted: true,
        ..StartSnapshot::default()
    };
    expect_error(
        w.sim.start_snapshot(&w.root(&w.a), &w.east, &start),
        "ValidationException",
        ErrorKind::Invalid,
    );
}

#[test]
fn put_and_complete_write_a_snapshot_that_reads_back() {
    let w = World::new();
    let root = w.root(&w.a);
    let start = StartSnapshot {
        volume_size_gib: 1,
        ..StartSnapshot::default()
    };
    let snap = w.sim.start_snapshot(&root, &w.east, &start).unwrap();
    // Written out of order; the linear checksum follows the index order.
    let blocks = [(7u64, block(5)), (2u64, block(4))];
    for (index, data) in &blocks {
        w.sim
            .put_snapshot_block(&root, &w.east, &snap, *index, data, &sha256_b64(data))
            .unwrap();
    }
    let linear = linear_checksum(&[sha256_b64(&blocks[1].1), sha256_b64(&blocks[0].1)]);
    w.sim
        .complete_snapshot(&root, &w.east, &snap, 2, &linear)
        .unwrap();

    let page = w.sim.list_snapshot_blocks(&root, &w.east, &snap, None).unwrap();
    let indexes: Vec<u64> = page.blocks.iter().map(|b| b.index).collect();
    assert_eq!(indexes, vec![2, 7]);
    for (block_ref, expected) in page.blocks.iter().zip([&blocks[1].1, &blocks[0].1]) {
        let (data, checksum) = w
            .sim
            .get_snapshot_block(&root, &w.east, &snap, block_ref)
            .unwrap();
        assert_eq!(&data, expected);
        assert_eq!(checksum, sha256_b64(expected));
    }
    let info = w.sim.describe_snapshots(&root, &w.east, &[snap]).unwrap();
    assert_eq!(info[0].state, "completed");
}

#[test]
fn wrong_checksums_are_validation_errors() {
    let w = World::new();
    let root = w.root(&w.a);
    let start = StartSnapshot {
        volume_size_gib: 1,
        ..StartSnapshot::default()
    };
    let snap = w.sim.start_snapshot(&root, &w.east, &start).unwrap();
    let data = block(3);
    expect_error(
        w.sim
            .put_snapshot_block(&root, &w.east, &snap, 0, &data, &sha256_b64(&block(4))),
        "ValidationException",
        ErrorKind::Invalid,
    );
    w.sim
        .put_snapshot_block(&root, &w.east, &snap, 0, &data, &sha256_b64(&data))
        .unwrap();
    // The checksum of the data, not the SHA-256 over the checksums, is not the linear checksum.
    expect_error(
        w.sim
            .complete_snapshot(&root, &w.east, &snap, 1, &sha256_b64(&data)),
        "ValidationException",
        ErrorKind::Invalid,
    );
    // Still pending: the right checksum completes it.
    let linear = linear_checksum(&[sha256_b64(&data)]);
    w.sim
        .complete_snapshot(&root, &w.east, &snap, 1, &linear)
        .unwrap();
}

#[test]
fn a_pending_snapshot_cannot_be_read() {
    let w = World::new();
    let root = w.root(&w.a);
    let start = StartSnapshot {
        volume_size_gib: 1,
        ..StartSnapshot::default()
    };
    let snap = w.sim.start_snapshot(&root, &w.east, &start).unwrap();
    expect_error(
        w.sim.list_snapshot_blocks(&root, &w.east, &snap, None),
        "ValidationException",
        ErrorKind::Invalid,
    );
}

// ---- 11. faults --------------------------------------------------------------------------

#[test]
fn a_fail_fault_lets_skip_calls_through_then_fails_once() {
    let w = World::new();
    let root = w.root(&w.a);
    w.sim
        .inject(Fault::Fail {
            action: Action::Ec2CreateVolume,
            skip: 1,
            code: "InsufficientVolumeCapacity".into(),
            kind: ErrorKind::Unavailable,
        })
        .unwrap();
    let plain = CreateVolume {
        size_gib: Some(1),
        ..CreateVolume::default()
    };
    // Other actions are not affected.
    w.sim.ebs_encryption_by_default(&root, &w.east).unwrap();
    w.sim.create_volume(&root, &w.east, &plain).unwrap();
    let error = expect_error(
        w.sim.create_volume(&root, &w.east, &plain),
        "InsufficientVolumeCapacity",
        ErrorKind::Unavailable,
    );
    assert_eq!(error.action, Action::Ec2CreateVolume);
    w.sim.create_volume(&root, &w.east, &plain).unwrap();
}

#[test]
fn a_throttle_fault_throttles_the_given_number_of_calls() {
    let w = World::new();
    let root = w.root(&w.a);
    w.sim
        .inject(Fault::Throttle {
            action: Action::Ec2GetEbsEncryptionByDefault,
            times: 2,
        })
        .unwrap();
    for _ in 0..2 {
        let error = expect_error(
            w.sim.ebs_encryption_by_default(&root, &w.east),
            "RequestLimitExceeded",
            ErrorKind::Throttled,
        );
        assert!(error.kind.retryable());
    }
    w.sim.ebs_encryption_by_default(&root, &w.east).unwrap();
}

#[test]
fn a_throttle_fault_of_zero_times_throttles_nothing() {
    let w = World::new();
    let root = w.root(&w.a);
    w.sim
        .inject(Fault::Throttle {
            action: Action::Ec2GetEbsEncryptionByDefault,
            times: 0,
        })
        .unwrap();
    w.sim.ebs_encryption_by_default(&root, &w.east).unwrap();
    w.sim.ebs_encryption_by_default(&root, &w.east).unwrap();
}

// ---- 12. persistence ---------------------------------------------------------------------

#[test]
fn the_world_survives_reopening_and_is_shared_by_every_opener() {
    let dir = tempfile::tempdir().unwrap();
    let a = account("111111111111");
    let east = region("us-east-1");
    let (root, vol, digest) = {
        let sim = Sim::open(dir.path()).unwrap();
        // A second opener (another process, in effect: its own world and lock) sees what the
        // first makes, and the first what the second makes.
        let other = Sim::open(dir.path()).unwrap();
        let root = sim.root_credentials(&a).unwrap();
        assert_eq!(other.root_credentials(&a).unwrap(), root);
        let made = other
            .create_volume(
                &root,
                &east,
                &CreateVolume {
                    size_gib: Some(2),
                    ..CreateVolume::default()
                },
            )
            .unwrap()
            .id;
        assert_eq!(
            sim.describe_volumes(&root, &east, std::slice::from_ref(&made))
                .unwrap()[0]
                .size_gib,
            2
        );
        sim.delete_volume(&root, &east, &made).unwrap();
        assert!(other
            .describe_volumes(&root, &east, std::slice::from_ref(&made))
            .is_err());
        let plain = CreateVolume {
            size_gib: Some(1),
            ..CreateVolume::default()
        };
        let vol = sim.create_volume(&root, &east, &plain).unwrap().id;
        sim.write_volume(&a, &east, &vol, EBS_BLOCK_SIZE * 2, &block(6))
            .unwrap();
        let digest = sim.volume_digest(&a, &east, &vol).unwrap();
        (root, vol, digest)
    };
    let sim = Sim::open(dir.path()).unwrap();
    // The credentials, the volume and its bytes are all still there.
    let info = sim
        .describe_volumes(&root, &east, std::slice::from_ref(&vol))
        .unwrap();
    assert_eq!(info[0].state, "available");
    assert_eq!(sim.volume_digest(&a, &east, &vol), Some(digest));
    let snap = sim.create_snapshot(&root, &east, &vol, &[]).unwrap().id;
    let page = sim.list_snapshot_blocks(&root, &east, &snap, None).unwrap();
    let (data, _) = sim
        .get_snapshot_block(&root, &east, &snap, &page.blocks[0])
        .unwrap();
    assert_eq!(data, block(6));
}

// ---- 13. inventory -----------------------------------------------------------------------

#[test]
fn inventory_reports_shares_and_attachments_added() {
    let w = World::new();
    cmk_world(&w);
    let root = w.root(&w.a);
    let plain = CreateVolume {
        size_gib: Some(1),
        ..CreateVolume::default()
    };
    let vol = w.sim.create_volume(&root, &w.east, &plain).unwrap().id;
    let before = w.sim.inventory();
    let snap = w.shared_snapshot("vol-000000a1");
    w.sim
        .attach_volume(&root, &w.east, &vol, &instance("i-000000a1"), "/dev/sdf")
        .unwrap();
    let added = w.sim.inventory().added_since(&before);
    let share = format!("share of snapshot {snap} with 222222222222");
    let attached = format!("volume {vol} (111111111111, us-east-1) attached to i-000000a1 as /dev/sdf");
    assert!(added.contains(&share), "{added:#?}");
    assert!(added.contains(&attached), "{added:#?}");
    // Detached and unshared, they are gone again (the snapshot itself remains).
    w.sim.detach_volume(&root, &w.east, &vol).unwrap();
    w.sim
        .modify_snapshot_sharing(&root, &w.east, &snap, &[], std::slice::from_ref(&w.b))
        .unwrap();
    let added = w.sim.inventory().added_since(&before);
    assert!(
        !added.contains(&share) && !added.contains(&attached),
        "{added:#?}"
    );
}
