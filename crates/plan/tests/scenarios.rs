//! Every scenario of the seed documents, as a table: the operation, then the steps (who, what,
//! where), the KMS key grants and the cleanup the planner must produce, or the refusal.
//!
//! Steps are written compactly, `ACTOR ACTION ACCOUNT/REGION`, with accounts by letter (B the
//! backup account, P production, T the restore/replica target, N an account with only a backup
//! role) and keys by name. `sts:AssumeRole` and the session queue's `sqs:` calls are left out
//! of the tables; `worker_plans_talk_over_the_session_queue` and the property tests cover them.
//!
//! (Over 800 lines: one table of every documented scenario, which reads best whole.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bulwark_model::{Estate, KeyRef};
use bulwark_plan::{plan, Actor, Call, Operation, Placement, Plan, RefusalCode, RestoreSource, Step};

const B: &str = "111111111111";
const P: &str = "222222222222";
const T: &str = "333333333333";
const N: &str = "444444444444";

/// Customer managed keys of the fixture, by name.
const KEYS: &[(&str, &str)] = &[
    (
        "P_USE1",
        "arn:aws:kms:us-east-1:222222222222:key/22222222-0000-4000-8000-000000000001",
    ),
    (
        "P_USE1_OTHER",
        "arn:aws:kms:us-east-1:222222222222:key/22222222-0000-4000-8000-000000000002",
    ),
    (
        "P_EUW1",
        "arn:aws:kms:eu-west-1:222222222222:key/22222222-0000-4000-8000-000000000003",
    ),
    (
        "B_USE1",
        "arn:aws:kms:us-east-1:111111111111:key/11111111-0000-4000-8000-000000000001",
    ),
    (
        "B_EUW1",
        "arn:aws:kms:eu-west-1:111111111111:key/11111111-0000-4000-8000-000000000002",
    ),
    (
        "T_EUW1",
        "arn:aws:kms:eu-west-1:333333333333:key/33333333-0000-4000-8000-000000000001",
    ),
    (
        "T_EXTRA",
        "arn:aws:kms:eu-west-1:333333333333:key/33333333-0000-4000-8000-000000000002",
    ),
];

const CMK: &str = "i-0aaaaaaaaaaaaaaaa"; // one volume under P_USE1
const EBS: &str = "i-0bbbbbbbbbbbbbbbb"; // one volume under aws/ebs
const PLAIN: &str = "i-0cccccccccccccccc"; // one unencrypted volume
const IN_BACKUP_ACCOUNT: &str = "i-0dddddddddddddddd"; // in B, under aws/ebs
const IN_N: &str = "i-0eeeeeeeeeeeeeeee"; // in N, unencrypted

fn estate() -> Estate {
    let key = |name: &str| {
        KEYS.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, arn)| *arn)
            .unwrap()
    };
    let text = format!(
        r#"
[appliance]
account = "{B}"
worker_deployment_role = "arn:aws:iam::{B}:role/WorkerDeployment"

[repository]
bucket = "bulwark-test"
region = "us-east-1"
role = "arn:aws:iam::{B}:role/Repository"

[[account]]
id = "{B}"
backup_role = "arn:aws:iam::{B}:role/Backup"

[[account]]
id = "{P}"
backup_role = "arn:aws:iam::{P}:role/Backup"
restore_role = "arn:aws:iam::{P}:role/Restore"
worker_role = "arn:aws:iam::{P}:role/Worker"

[[account]]
id = "{T}"
backup_role = "arn:aws:iam::{T}:role/Backup"
restore_role = "arn:aws:iam::{T}:role/Restore"
worker_role = "arn:aws:iam::{T}:role/Worker"

[[account]]
id = "{N}"
backup_role = "arn:aws:iam::{N}:role/Backup"

[default_keys]
"{B}/us-east-1" = "{b_use1}"
"{B}/eu-west-1" = "{b_euw1}"
"{P}/eu-west-1" = "{p_euw1}"
"{T}/eu-west-1" = "{t_euw1}"

[encryption_by_default]
"{T}/us-west-2" = true

[[instance]]
id = "{CMK}"
account = "{P}"
region = "us-east-1"
volumes = [{{ id = "vol-0aaaaaaaaaaaaaaaa", size_gib = 8, key = "{p_use1}" }}]

[[instance]]
id = "{EBS}"
account = "{P}"
region = "us-east-1"
volumes = [{{ id = "vol-0bbbbbbbbbbbbbbbb", size_gib = 8, key = "aws/ebs" }}]

[[instance]]
id = "{PLAIN}"
account = "{P}"
region = "us-east-1"
volumes = [{{ id = "vol-0cccccccccccccccc", size_gib = 8 }}]

[[instance]]
id = "{IN_BACKUP_ACCOUNT}"
account = "{B}"
region = "us-east-1"
volumes = [{{ id = "vol-0dddddddddddddddd", size_gib = 8, key = "aws/ebs" }}]

[[instance]]
id = "{IN_N}"
account = "{N}"
region = "us-east-1"
volumes = [{{ id = "vol-0eeeeeeeeeeeeeeee", size_gib = 8 }}]
"#,
        b_use1 = key("B_USE1"),
        b_euw1 = key("B_EUW1"),
        p_euw1 = key("P_EUW1"),
        t_euw1 = key("T_EUW1"),
        p_use1 = key("P_USE1"),
    );
    Estate::parse("fixture.toml", &text).unwrap()
}

fn letter(account: &str) -> &'static str {
    match account {
        B => "B",
        P => "P",
        T => "T",
        N => "N",
        other => panic!("unexpected account {other}"),
    }
}

fn actor(a: &Actor) -> String {
    match a {
        Actor::Appliance => "appliance".into(),
        Actor::Worker(role) if role.as_str().contains(":role/bulwark/") => "temp-worker".into(),
        Actor::Role(role) | Actor::Worker(role) => {
            format!("{}@{}", role.name(), letter(role.account().as_str()))
        }
    }
}

fn key_name(key: &KeyRef) -> String {
    match key {
        KeyRef::AwsManaged { account, region } => format!("aws/ebs@{}/{region}", letter(account.as_str())),
        KeyRef::Customer(arn) => KEYS
            .iter()
            .find(|(_, a)| *a == arn.as_str())
            .map(|(n, _)| (*n).to_owned())
            .unwrap_or_else(|| panic!("unnamed key {arn}")),
    }
}

fn compact(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| {
            let a = s.action().as_str();
            a != "sts:AssumeRole" && a != "iam:SimulatePrincipalPolicy" && !a.starts_with("sqs:")
        })
        .map(|s| {
            let region = s.region.as_ref().map_or("global", |r| r.as_str());
            format!(
                "{} {} {}/{region}",
                actor(&s.actor),
                s.action(),
                letter(s.account.as_str())
            )
        })
        .collect()
}

/// Grants as `ROLE KEY ebs|decrypt|describe`, `+encrypt` when the EBS direct APIs write with
/// the key; `ebs` is the full EBS set (which includes DescribeKey and Decrypt).
fn grants(plan: &Plan) -> Vec<String> {
    let mut g: Vec<String> = plan
        .key_grants
        .iter()
        .map(|g| {
            let kind = if g.actions.contains(&bulwark_model::Action::KmsCreateGrant) {
                "ebs"
            } else if g.actions.contains(&bulwark_model::Action::KmsDecrypt) {
                "decrypt"
            } else {
                "describe"
            };
            let encrypt = if g.actions.contains(&bulwark_model::Action::KmsEncrypt) {
                "+encrypt"
            } else {
                ""
            };
            format!("{} {} {kind}{encrypt}", actor(&g.role), key_name(&g.key))
        })
        .collect();
    g.sort();
    g
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

enum Expect {
    Plan {
        steps: &'static str,
        grants: &'static str,
        cleanup: &'static str,
    },
    Refused(RefusalCode),
}

fn op_restore(
    instance: &str,
    from: RestoreSource,
    to: (&str, &str),
    key: Option<&str>,
    workers: Option<Placement>,
) -> Operation {
    let to_account = to.0.parse().unwrap();
    let to_region = to.1.parse().unwrap();
    let target_key = key.map(|name| {
        let arn = KEYS.iter().find(|(n, _)| *n == name).map_or(name, |(_, a)| *a);
        KeyRef::parse_in(arn, &to_account, &to_region).unwrap()
    });
    Operation::Restore {
        instance: instance.parse().unwrap(),
        from,
        to_account,
        to_region,
        target_key,
        workers,
        launch: Default::default(),
    }
}

fn op_replicate(instance: &str, to: (&str, &str), key: Option<&str>) -> Operation {
    match op_restore(instance, RestoreSource::Snapshot, to, key, None) {
        Operation::Restore {
            instance,
            to_account,
            to_region,
            target_key,
            ..
        } => Operation::Replicate {
            instance,
            to_account,
            to_region,
            target_key,
        },
        _ => unreachable!(),
    }
}

fn op_backup(instance: &str, workers: Option<Placement>) -> Operation {
    Operation::Backup {
        instance: instance.parse().unwrap(),
        workers,
        file_index: false,
    }
}

fn check(name: &str, op: Operation, expect: Expect) {
    let estate = estate();
    let result = plan(&estate, &op);
    match (expect, result) {
        (Expect::Refused(code), Err(refusal)) => {
            assert_eq!(refusal.code, code, "{name}: {refusal}");
            assert!(
                !refusal.message.is_empty() && !refusal.remedy.is_empty(),
                "{name}"
            );
        }
        (Expect::Refused(code), Ok(plan)) => panic!(
            "{name}: expected refusal {code}, got a plan:\n{:#?}",
            compact(&plan.steps)
        ),
        (Expect::Plan { .. }, Err(refusal)) => panic!("{name}: expected a plan, got {refusal:?}"),
        (
            Expect::Plan {
                steps,
                grants: want_grants,
                cleanup,
            },
            Ok(plan),
        ) => {
            assert_eq!(compact(&plan.steps), lines(steps), "{name}: steps");
            let mut want = lines(want_grants);
            want.sort();
            assert_eq!(grants(&plan), want, "{name}: key grants");
            assert_eq!(compact(&plan.cleanup), lines(cleanup), "{name}: cleanup");
        }
    }
}

use Placement::{BackupAccount, NoWorker, ProductionAccount};
use RestoreSource::{Backup, Snapshot};

const WORKER_IN_B: &str = "
    WorkerDeployment@B iam:CreateRole B/global
    WorkerDeployment@B iam:PutRolePolicy B/global
    WorkerDeployment@B iam:CreateInstanceProfile B/global
    WorkerDeployment@B iam:AddRoleToInstanceProfile B/global";

const WORKER_IN_B_CLEANUP: &str = "
    WorkerDeployment@B iam:RemoveRoleFromInstanceProfile B/global
    WorkerDeployment@B iam:DeleteInstanceProfile B/global
    WorkerDeployment@B iam:DeleteRolePolicy B/global
    WorkerDeployment@B iam:DeleteRole B/global";

fn concat(parts: &[&str]) -> &'static str {
    Box::leak(parts.concat().into_boxed_str())
}

// ---- cloud-native snapshots ----------------------------------------------------------------

#[test]
fn snapshots_of_encrypted_volumes_need_no_key_permission() {
    for instance in [CMK, EBS, PLAIN] {
        check(
            instance,
            Operation::Snapshot {
                instance: instance.parse().unwrap(),
            },
            Expect::Plan {
                steps: "Backup@P ec2:CreateSnapshots P/us-east-1",
                grants: "",
                cleanup: "",
            },
        );
    }
}

// ---- image-level backups ---------------------------------------------------------------------

#[test]
fn backup_of_a_cmk_volume_with_the_worker_in_the_backup_account_shares_and_reencrypts() {
    check(
        "cmk, backup account",
        op_backup(CMK, None),
        Expect::Plan {
            steps: concat(&[
                "Backup@P ec2:CreateSnapshots P/us-east-1
                 Backup@P kms:DescribeKey P/us-east-1
                 Backup@P ec2:ModifySnapshotAttribute P/us-east-1
                 Backup@P ebs:ListChangedBlocks P/us-east-1",
                WORKER_IN_B,
                "
                 WorkerDeployment@B ec2:RunInstances B/us-east-1
                 WorkerDeployment@B ec2:CreateVolume B/us-east-1
                 WorkerDeployment@B ec2:AttachVolume B/us-east-1
                 Repository@B s3:PutObject B/us-east-1",
            ]),
            // Source key for the sharing role (checked before sharing, and decrypted by the
            // listing of changes); source key and the backup account's default key of the
            // region for the worker deployment role.
            grants: "Backup@P P_USE1 decrypt
                     WorkerDeployment@B P_USE1 ebs
                     WorkerDeployment@B B_USE1 ebs",
            cleanup: concat(&[
                "WorkerDeployment@B ec2:DetachVolume B/us-east-1
                 WorkerDeployment@B ec2:DeleteVolume B/us-east-1
                 WorkerDeployment@B ec2:TerminateInstances B/us-east-1",
                WORKER_IN_B_CLEANUP,
                // The previous base snapshot, then the share of the new one.
                "
                 Backup@P ec2:DeleteSnapshot P/us-east-1
                 Backup@P ec2:ModifySnapshotAttribute P/us-east-1",
            ]),
        },
    );
}

#[test]
fn backup_of_an_aws_ebs_volume_across_accounts_is_refused() {
    check(
        "ebs, default placement",
        op_backup(EBS, None),
        Expect::Refused(RefusalCode::AwsManagedKeyNotShareable),
    );
    check(
        "ebs, backup account",
        op_backup(EBS, Some(BackupAccount)),
        Expect::Refused(RefusalCode::AwsManagedKeyNotShareable),
    );
}

#[test]
fn backup_of_an_aws_ebs_volume_with_the_worker_in_the_production_account_works() {
    check(
        "ebs, production",
        op_backup(EBS, Some(ProductionAccount)),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P ebs:ListChangedBlocks P/us-east-1
                    Backup@P ec2:RunInstances P/us-east-1
                    Backup@P ec2:CreateVolume P/us-east-1
                    Backup@P ec2:AttachVolume P/us-east-1
                    Repository@B s3:PutObject B/us-east-1",
            grants: "Backup@P aws/ebs@P/us-east-1 ebs",
            // The production worker role is never removed.
            cleanup: "Backup@P ec2:DetachVolume P/us-east-1
                      Backup@P ec2:DeleteVolume P/us-east-1
                      Backup@P ec2:TerminateInstances P/us-east-1
                      Backup@P ec2:DeleteSnapshot P/us-east-1",
        },
    );
}

#[test]
fn backup_of_a_cmk_volume_with_the_worker_in_the_production_account_needs_the_source_key() {
    check(
        "cmk, production",
        op_backup(CMK, Some(ProductionAccount)),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P ebs:ListChangedBlocks P/us-east-1
                    Backup@P ec2:RunInstances P/us-east-1
                    Backup@P ec2:CreateVolume P/us-east-1
                    Backup@P ec2:AttachVolume P/us-east-1
                    Repository@B s3:PutObject B/us-east-1",
            grants: "Backup@P P_USE1 ebs",
            cleanup: "Backup@P ec2:DetachVolume P/us-east-1
                      Backup@P ec2:DeleteVolume P/us-east-1
                      Backup@P ec2:TerminateInstances P/us-east-1
                      Backup@P ec2:DeleteSnapshot P/us-east-1",
        },
    );
}

#[test]
fn backup_of_an_unencrypted_volume_across_accounts_needs_no_key() {
    check(
        "plain, backup account",
        op_backup(PLAIN, None),
        Expect::Plan {
            steps: concat(&[
                "Backup@P ec2:CreateSnapshots P/us-east-1
                 Backup@P ec2:ModifySnapshotAttribute P/us-east-1
                 Backup@P ebs:ListChangedBlocks P/us-east-1",
                WORKER_IN_B,
                "
                 WorkerDeployment@B ec2:RunInstances B/us-east-1
                 WorkerDeployment@B ec2:CreateVolume B/us-east-1
                 WorkerDeployment@B ec2:AttachVolume B/us-east-1
                 Repository@B s3:PutObject B/us-east-1",
            ]),
            grants: "",
            cleanup: concat(&[
                "WorkerDeployment@B ec2:DetachVolume B/us-east-1
                 WorkerDeployment@B ec2:DeleteVolume B/us-east-1
                 WorkerDeployment@B ec2:TerminateInstances B/us-east-1",
                WORKER_IN_B_CLEANUP,
                // The previous base snapshot, then the share of the new one.
                "
                 Backup@P ec2:DeleteSnapshot P/us-east-1
                 Backup@P ec2:ModifySnapshotAttribute P/us-east-1",
            ]),
        },
    );
}

#[test]
fn backup_of_an_instance_of_the_backup_account_needs_no_sharing() {
    check(
        "aws/ebs instance in the backup account",
        op_backup(IN_BACKUP_ACCOUNT, None),
        Expect::Plan {
            steps: concat(&[
                "Backup@B ec2:CreateSnapshots B/us-east-1
                 Backup@B ebs:ListChangedBlocks B/us-east-1",
                WORKER_IN_B,
                "
                 WorkerDeployment@B ec2:RunInstances B/us-east-1
                 WorkerDeployment@B ec2:CreateVolume B/us-east-1
                 WorkerDeployment@B ec2:AttachVolume B/us-east-1
                 Repository@B s3:PutObject B/us-east-1",
            ]),
            grants: "Backup@B aws/ebs@B/us-east-1 decrypt
                     WorkerDeployment@B aws/ebs@B/us-east-1 ebs",
            cleanup: concat(&[
                "WorkerDeployment@B ec2:DetachVolume B/us-east-1
                 WorkerDeployment@B ec2:DeleteVolume B/us-east-1
                 WorkerDeployment@B ec2:TerminateInstances B/us-east-1",
                WORKER_IN_B_CLEANUP,
                "
                 Backup@B ec2:DeleteSnapshot B/us-east-1",
            ]),
        },
    );
}

#[test]
fn backup_without_workers_reads_the_snapshots_in_their_own_account() {
    // aws/ebs is no obstacle: nothing leaves the account. The snapshots are kept as the base
    // of the next backup's changes; the cleanup removes the previous base.
    for (instance, key) in [(EBS, "aws/ebs@P/us-east-1"), (CMK, "P_USE1")] {
        let name = format!("{instance}, no worker");
        check(
            &name,
            op_backup(instance, Some(NoWorker)),
            Expect::Plan {
                steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                        Backup@P ebs:GetSnapshotBlock P/us-east-1
                        Repository@B s3:PutObject B/us-east-1",
                grants: concat(&["Backup@P ", key, " decrypt"]),
                cleanup: "Backup@P ec2:DeleteSnapshot P/us-east-1",
            },
        );
        let plan = plan(&estate(), &op_backup(instance, Some(NoWorker))).unwrap();
        assert_eq!(
            compact(&plan.rollback),
            lines("Backup@P ec2:DeleteSnapshot P/us-east-1"),
            "{name}"
        );
    }
    check(
        "plain, no worker",
        op_backup(PLAIN, Some(NoWorker)),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P ebs:GetSnapshotBlock P/us-east-1
                    Repository@B s3:PutObject B/us-east-1",
            grants: "",
            cleanup: "Backup@P ec2:DeleteSnapshot P/us-east-1",
        },
    );
}

#[test]
fn production_workers_need_the_accounts_worker_role() {
    check(
        "no worker role",
        op_backup(IN_N, Some(ProductionAccount)),
        Expect::Refused(RefusalCode::WorkerRoleNotConfigured),
    );
}

#[test]
fn image_level_operations_need_a_repository() {
    let text = estate_text_without_repository();
    let estate = Estate::parse("fixture.toml", &text).unwrap();
    for op in [
        op_backup(CMK, None),
        op_restore(CMK, Backup, (P, "us-east-1"), None, None),
    ] {
        let refusal = plan(&estate, &op).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::RepositoryNotConfigured);
    }
    // Snapshots need none.
    assert!(plan(
        &estate,
        &Operation::Snapshot {
            instance: CMK.parse().unwrap()
        }
    )
    .is_ok());
}

fn estate_text_without_repository() -> String {
    format!(
        r#"
[appliance]
account = "{B}"
worker_deployment_role = "arn:aws:iam::{B}:role/WorkerDeployment"
[[account]]
id = "{P}"
backup_role = "arn:aws:iam::{P}:role/Backup"
restore_role = "arn:aws:iam::{P}:role/Restore"
[[instance]]
id = "{CMK}"
account = "{P}"
region = "us-east-1"
volumes = [{{ id = "vol-0aaaaaaaaaaaaaaaa", size_gib = 8 }}]
"#
    )
}

// ---- snapshot replicas -----------------------------------------------------------------------

#[test]
fn replica_in_the_same_account_needs_source_and_target_keys() {
    check(
        "same account, default key of the target region",
        op_replicate(CMK, (P, "eu-west-1"), None),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P ec2:CopySnapshot P/eu-west-1",
            grants: "Backup@P P_USE1 ebs
                     Backup@P P_EUW1 ebs",
            cleanup: "",
        },
    );
    check(
        "same account, target region whose default key is aws/ebs",
        op_replicate(CMK, (P, "us-west-2"), None),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P ec2:CopySnapshot P/us-west-2",
            grants: "Backup@P P_USE1 ebs
                     Backup@P aws/ebs@P/us-west-2 ebs",
            cleanup: "",
        },
    );
}

#[test]
fn replica_in_another_account_is_copied_by_the_target_account() {
    check(
        "cross account, default key of the target region in the target account",
        op_replicate(CMK, (T, "eu-west-1"), None),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P kms:DescribeKey P/us-east-1
                    Backup@P ec2:ModifySnapshotAttribute P/us-east-1
                    Backup@T ec2:CopySnapshot T/eu-west-1",
            grants: "Backup@P P_USE1 describe
                     Backup@T P_USE1 ebs
                     Backup@T T_EUW1 ebs",
            cleanup: "Backup@P ec2:ModifySnapshotAttribute P/us-east-1",
        },
    );
    check(
        "cross account, target key",
        op_replicate(CMK, (T, "eu-west-1"), Some("T_EXTRA")),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P kms:DescribeKey P/us-east-1
                    Backup@P ec2:ModifySnapshotAttribute P/us-east-1
                    Backup@T ec2:CopySnapshot T/eu-west-1",
            grants: "Backup@P P_USE1 describe
                     Backup@T P_USE1 ebs
                     Backup@T T_EXTRA ebs",
            cleanup: "Backup@P ec2:ModifySnapshotAttribute P/us-east-1",
        },
    );
}

#[test]
fn replica_of_an_aws_ebs_volume_to_another_account_is_refused() {
    check(
        "ebs cross account",
        op_replicate(EBS, (T, "eu-west-1"), None),
        Expect::Refused(RefusalCode::AwsManagedKeyNotShareable),
    );
}

#[test]
fn replica_of_an_unencrypted_volume_is_encrypted_where_encryption_by_default_is_on() {
    check(
        "plain to a region encrypting by default",
        op_replicate(PLAIN, (T, "us-west-2"), None),
        Expect::Plan {
            steps: "Backup@P ec2:CreateSnapshots P/us-east-1
                    Backup@P ec2:ModifySnapshotAttribute P/us-east-1
                    Backup@T ec2:CopySnapshot T/us-west-2",
            grants: "Backup@T aws/ebs@T/us-west-2 ebs",
            cleanup: "Backup@P ec2:ModifySnapshotAttribute P/us-east-1",
        },
    );
}

#[test]
fn target_key_must_be_in_the_target_region() {
    let op = op_replicate(CMK, (T, "us-east-1"), None);
    let Operation::Replicate {
        instance,
        to_account,
        to_region,
        ..
    } = op
    else {
        unreachable!()
    };
    let key = KEYS.iter().find(|(n, _)| *n == "T_EXTRA").unwrap().1;
    let target_key = Some(KeyRef::Customer(key.parse().unwrap()));
    check(
        "key of eu-west-1 for us-east-1",
        Operation::Replicate {
            instance,
            to_account,
            to_region,
            target_key,
        },
        Expect::Refused(RefusalCode::KeyNotInTargetRegion),
    );
}

// ---- restores from cloud-native snapshots ------------------------------------------------------

#[test]
fn restore_from_snapshot_in_place() {
    check(
        "same account and region, snapshot key kept",
        op_restore(CMK, Snapshot, (P, "us-east-1"), None, None),
        Expect::Plan {
            steps: "Restore@P ec2:CreateVolume P/us-east-1
                    Restore@P ec2:CreateSnapshot P/us-east-1
                    Restore@P ec2:RegisterImage P/us-east-1
                    Restore@P ec2:RunInstances P/us-east-1
                    Restore@P ec2:DeregisterImage P/us-east-1
                    Restore@P ec2:DeleteSnapshot P/us-east-1
                    Restore@P ec2:DeleteVolume P/us-east-1
                    Restore@P ec2:ModifyInstanceAttribute P/us-east-1",
            grants: "Restore@P P_USE1 ebs",
            cleanup: "",
        },
    );
    check(
        "same account and region, target key",
        op_restore(CMK, Snapshot, (P, "us-east-1"), Some("P_USE1_OTHER"), None),
        Expect::Plan {
            steps: "Restore@P ec2:CreateVolume P/us-east-1
                    Restore@P ec2:CreateSnapshot P/us-east-1
                    Restore@P ec2:RegisterImage P/us-east-1
                    Restore@P ec2:RunInstances P/us-east-1
                    Restore@P ec2:DeregisterImage P/us-east-1
                    Restore@P ec2:DeleteSnapshot P/us-east-1
                    Restore@P ec2:DeleteVolume P/us-east-1
                    Restore@P ec2:ModifyInstanceAttribute P/us-east-1",
            grants: "Restore@P P_USE1 ebs
                     Restore@P P_USE1_OTHER ebs",
            cleanup: "",
        },
    );
}

#[test]
fn restore_from_snapshot_to_another_region_copies_with_the_snapshot_role() {
    check(
        "same account, eu-west-1",
        op_restore(CMK, Snapshot, (P, "eu-west-1"), None, None),
        Expect::Plan {
            steps: "Backup@P ec2:CopySnapshot P/eu-west-1
                    Restore@P ec2:CreateVolume P/eu-west-1
                    Restore@P ec2:CreateSnapshot P/eu-west-1
                    Restore@P ec2:RegisterImage P/eu-west-1
                    Restore@P ec2:RunInstances P/eu-west-1
                    Restore@P ec2:DeregisterImage P/eu-west-1
                    Restore@P ec2:DeleteSnapshot P/eu-west-1
                    Restore@P ec2:DeleteVolume P/eu-west-1
                    Restore@P ec2:ModifyInstanceAttribute P/eu-west-1",
            grants: "Backup@P P_USE1 ebs
                     Backup@P P_EUW1 ebs
                     Restore@P P_EUW1 ebs",
            cleanup: "Backup@P ec2:DeleteSnapshot P/eu-west-1",
        },
    );
}

#[test]
fn restore_from_snapshot_to_another_account_in_the_same_region_shares() {
    check(
        "T, us-east-1",
        op_restore(CMK, Snapshot, (T, "us-east-1"), None, None),
        Expect::Plan {
            steps: "Backup@P kms:DescribeKey P/us-east-1
                    Backup@P ec2:ModifySnapshotAttribute P/us-east-1
                    Restore@T ec2:CreateVolume T/us-east-1
                    Restore@T ec2:CreateSnapshot T/us-east-1
                    Restore@T ec2:RegisterImage T/us-east-1
                    Restore@T ec2:RunInstances T/us-east-1
                    Restore@T ec2:DeregisterImage T/us-east-1
                    Restore@T ec2:DeleteSnapshot T/us-east-1
                    Restore@T ec2:DeleteVolume T/us-east-1
                    Restore@T ec2:ModifyInstanceAttribute T/us-east-1",
            grants: "Backup@P P_USE1 describe
                     Restore@T P_USE1 ebs
                     Restore@T aws/ebs@T/us-east-1 ebs",
            cleanup: "Backup@P ec2:ModifySnapshotAttribute P/us-east-1",
        },
    );
    check(
        "aws/ebs, T, us-east-1",
        op_restore(EBS, Snapshot, (T, "us-east-1"), None, None),
        Expect::Refused(RefusalCode::AwsManagedKeyNotShareable),
    );
}

#[test]
fn restore_from_snapshot_to_another_account_and_region_copies_under_the_source_accounts_default_key() {
    let steps = "Backup@P ec2:CopySnapshot P/eu-west-1
                 Backup@P kms:DescribeKey P/eu-west-1
                 Backup@P ec2:ModifySnapshotAttribute P/eu-west-1
                 Restore@T ec2:CreateVolume T/eu-west-1
                 Restore@T ec2:CreateSnapshot T/eu-west-1
                 Restore@T ec2:RegisterImage T/eu-west-1
                 Restore@T ec2:RunInstances T/eu-west-1
                 Restore@T ec2:DeregisterImage T/eu-west-1
                 Restore@T ec2:DeleteSnapshot T/eu-west-1
                 Restore@T ec2:DeleteVolume T/eu-west-1
                 Restore@T ec2:ModifyInstanceAttribute T/eu-west-1";
    let cleanup = "Backup@P ec2:ModifySnapshotAttribute P/eu-west-1
                   Backup@P ec2:DeleteSnapshot P/eu-west-1";
    check(
        "cmk, T, eu-west-1, target key",
        op_restore(CMK, Snapshot, (T, "eu-west-1"), Some("T_EXTRA"), None),
        Expect::Plan {
            steps,
            grants: "Backup@P P_USE1 ebs
                     Backup@P P_EUW1 ebs
                     Restore@T P_EUW1 ebs
                     Restore@T T_EXTRA ebs",
            cleanup,
        },
    );
    // The copy re-encrypts aws/ebs data under the source account's CMK, which can be shared.
    check(
        "aws/ebs, T, eu-west-1",
        op_restore(EBS, Snapshot, (T, "eu-west-1"), Some("T_EXTRA"), None),
        Expect::Plan {
            steps,
            grants: "Backup@P aws/ebs@P/us-east-1 ebs
                     Backup@P P_EUW1 ebs
                     Restore@T P_EUW1 ebs
                     Restore@T T_EXTRA ebs",
            cleanup,
        },
    );
    // The source account's default key in us-west-2 is aws/ebs: the copy cannot be shared.
    check(
        "cmk, T, us-west-2",
        op_restore(CMK, Snapshot, (T, "us-west-2"), None, None),
        Expect::Refused(RefusalCode::AwsManagedKeyNotShareable),
    );
}

// ---- restores from image-level backups ---------------------------------------------------------

#[test]
fn restore_from_backup_with_the_worker_in_the_target_account_needs_the_target_key() {
    check(
        "T, eu-west-1, production workers",
        op_restore(
            CMK,
            Backup,
            (T, "eu-west-1"),
            Some("T_EXTRA"),
            Some(ProductionAccount),
        ),
        Expect::Plan {
            steps: "Restore@T ec2:RunInstances T/eu-west-1
                    Restore@T ec2:CreateVolume T/eu-west-1
                    Restore@T ec2:AttachVolume T/eu-west-1
                    Repository@B s3:GetObject B/us-east-1
                    Restore@T ec2:DetachVolume T/eu-west-1
                    Restore@T ec2:CreateSnapshot T/eu-west-1
                    Restore@T ec2:RegisterImage T/eu-west-1
                    Restore@T ec2:RunInstances T/eu-west-1
                    Restore@T ec2:DeregisterImage T/eu-west-1
                    Restore@T ec2:DeleteSnapshot T/eu-west-1
                    Restore@T ec2:DeleteVolume T/eu-west-1
                    Restore@T ec2:ModifyInstanceAttribute T/eu-west-1",
            grants: "Restore@T T_EXTRA ebs",
            cleanup: "Restore@T ec2:TerminateInstances T/eu-west-1",
        },
    );
    // An encrypted volume restored without a target key gets the target's default key.
    check(
        "P, us-east-1, production workers, no key",
        op_restore(CMK, Backup, (P, "us-east-1"), None, Some(ProductionAccount)),
        Expect::Plan {
            steps: "Restore@P ec2:RunInstances P/us-east-1
                    Restore@P ec2:CreateVolume P/us-east-1
                    Restore@P ec2:AttachVolume P/us-east-1
                    Repository@B s3:GetObject B/us-east-1
                    Restore@P ec2:DetachVolume P/us-east-1
                    Restore@P ec2:CreateSnapshot P/us-east-1
                    Restore@P ec2:RegisterImage P/us-east-1
                    Restore@P ec2:RunInstances P/us-east-1
                    Restore@P ec2:DeregisterImage P/us-east-1
                    Restore@P ec2:DeleteSnapshot P/us-east-1
                    Restore@P ec2:DeleteVolume P/us-east-1
                    Restore@P ec2:ModifyInstanceAttribute P/us-east-1",
            grants: "Restore@P aws/ebs@P/us-east-1 ebs",
            cleanup: "Restore@P ec2:TerminateInstances P/us-east-1",
        },
    );
}

#[test]
fn restore_from_backup_without_workers_writes_a_snapshot_in_the_target_account() {
    // The restore role writes the snapshot under the target key and creates the volume from
    // it: no worker, no sharing, whatever the account.
    check(
        "T, eu-west-1, no worker",
        op_restore(CMK, Backup, (T, "eu-west-1"), Some("T_EXTRA"), Some(NoWorker)),
        Expect::Plan {
            steps: "Repository@B s3:GetObject B/us-east-1
                    Restore@T ebs:StartSnapshot T/eu-west-1
                    Restore@T ec2:CreateVolume T/eu-west-1
                    Restore@T ec2:CreateSnapshot T/eu-west-1
                    Restore@T ec2:RegisterImage T/eu-west-1
                    Restore@T ec2:RunInstances T/eu-west-1
                    Restore@T ec2:DeregisterImage T/eu-west-1
                    Restore@T ec2:DeleteSnapshot T/eu-west-1
                    Restore@T ec2:DeleteVolume T/eu-west-1
                    Restore@T ec2:ModifyInstanceAttribute T/eu-west-1",
            grants: "Restore@T T_EXTRA ebs+encrypt",
            cleanup: "Restore@T ec2:DeleteSnapshot T/eu-west-1",
        },
    );
    // An encrypted volume restored without a target key gets the target's default key, here
    // aws/ebs of the same account: usable, as nothing is shared.
    check(
        "P, us-east-1, no worker, no key",
        op_restore(EBS, Backup, (P, "us-east-1"), None, Some(NoWorker)),
        Expect::Plan {
            steps: "Repository@B s3:GetObject B/us-east-1
                    Restore@P ebs:StartSnapshot P/us-east-1
                    Restore@P ec2:CreateVolume P/us-east-1
                    Restore@P ec2:CreateSnapshot P/us-east-1
                    Restore@P ec2:RegisterImage P/us-east-1
                    Restore@P ec2:RunInstances P/us-east-1
                    Restore@P ec2:DeregisterImage P/us-east-1
                    Restore@P ec2:DeleteSnapshot P/us-east-1
                    Restore@P ec2:DeleteVolume P/us-east-1
                    Restore@P ec2:ModifyInstanceAttribute P/us-east-1",
            grants: "Restore@P aws/ebs@P/us-east-1 ebs+encrypt",
            cleanup: "Restore@P ec2:DeleteSnapshot P/us-east-1",
        },
    );
}

#[test]
fn restore_without_workers_under_aws_ebs_needs_it_to_be_the_default_key() {
    // The EBS direct APIs take a key ARN, and a plan knows aws/ebs only by its alias.
    check(
        "P, eu-west-1, aws/ebs requested, CMK default",
        op_restore(
            EBS,
            Backup,
            (P, "eu-west-1"),
            Some("alias/aws/ebs"),
            Some(NoWorker),
        ),
        Expect::Refused(RefusalCode::AwsManagedKeyNotDefault),
    );
    // Without workers, the default key of the target (here a CMK) is used instead.
    check(
        "P, eu-west-1, no key",
        op_restore(EBS, Backup, (P, "eu-west-1"), None, Some(NoWorker)),
        Expect::Plan {
            steps: "Repository@B s3:GetObject B/us-east-1
                    Restore@P ebs:StartSnapshot P/eu-west-1
                    Restore@P ec2:CreateVolume P/eu-west-1
                    Restore@P ec2:CreateSnapshot P/eu-west-1
                    Restore@P ec2:RegisterImage P/eu-west-1
                    Restore@P ec2:RunInstances P/eu-west-1
                    Restore@P ec2:DeregisterImage P/eu-west-1
                    Restore@P ec2:DeleteSnapshot P/eu-west-1
                    Restore@P ec2:DeleteVolume P/eu-west-1
                    Restore@P ec2:ModifyInstanceAttribute P/eu-west-1",
            grants: "Restore@P P_EUW1 ebs+encrypt",
            cleanup: "Restore@P ec2:DeleteSnapshot P/eu-west-1",
        },
    );
}

#[test]
fn restore_from_backup_with_the_worker_in_another_account_goes_through_a_shared_snapshot() {
    check(
        "T, eu-west-1, workers in the backup account",
        op_restore(CMK, Backup, (T, "eu-west-1"), Some("T_EXTRA"), None),
        Expect::Plan {
            steps: concat(&[
                WORKER_IN_B,
                "
                 WorkerDeployment@B ec2:RunInstances B/eu-west-1
                 WorkerDeployment@B ec2:CreateVolume B/eu-west-1
                 WorkerDeployment@B ec2:AttachVolume B/eu-west-1
                 Repository@B s3:GetObject B/us-east-1
                 WorkerDeployment@B ec2:CreateSnapshot B/eu-west-1
                 WorkerDeployment@B kms:DescribeKey B/eu-west-1
                 WorkerDeployment@B ec2:ModifySnapshotAttribute B/eu-west-1
                 Restore@T ec2:CreateVolume T/eu-west-1
                 Restore@T ec2:CreateSnapshot T/eu-west-1
                 Restore@T ec2:RegisterImage T/eu-west-1
                 Restore@T ec2:RunInstances T/eu-west-1
                 Restore@T ec2:DeregisterImage T/eu-west-1
                 Restore@T ec2:DeleteSnapshot T/eu-west-1
                 Restore@T ec2:DeleteVolume T/eu-west-1
                 Restore@T ec2:ModifyInstanceAttribute T/eu-west-1",
            ]),
            // The worker's role needs the default key of the target region in its own account;
            // the restore role needs that key and the target key.
            grants: "WorkerDeployment@B B_EUW1 ebs
                     Restore@T B_EUW1 ebs
                     Restore@T T_EXTRA ebs",
            cleanup: concat(&[
                "WorkerDeployment@B ec2:ModifySnapshotAttribute B/eu-west-1
                 WorkerDeployment@B ec2:DeleteSnapshot B/eu-west-1
                 WorkerDeployment@B ec2:DetachVolume B/eu-west-1
                 WorkerDeployment@B ec2:DeleteVolume B/eu-west-1
                 WorkerDeployment@B ec2:TerminateInstances B/eu-west-1",
                WORKER_IN_B_CLEANUP,
            ]),
        },
    );
    // The backup account's default key in us-west-2 is aws/ebs: its snapshots cannot be shared.
    check(
        "T, us-west-2",
        op_restore(CMK, Backup, (T, "us-west-2"), None, None),
        Expect::Refused(RefusalCode::AwsManagedKeyNotShareable),
    );
}

#[test]
fn restores_need_the_target_accounts_restore_role() {
    check(
        "into N",
        op_restore(CMK, Snapshot, (N, "us-east-1"), None, None),
        Expect::Refused(RefusalCode::RoleNotConfigured),
    );
    check(
        "into B",
        op_restore(CMK, Backup, (B, "us-east-1"), None, None),
        Expect::Refused(RefusalCode::RoleNotConfigured),
    );
}

#[test]
fn unknown_instances_and_accounts_are_refused() {
    check(
        "unknown instance",
        Operation::Snapshot {
            instance: "i-00000000000000000".parse().unwrap(),
        },
        Expect::Refused(RefusalCode::UnknownInstance),
    );
    check(
        "unknown account",
        op_replicate(CMK, ("555555555555", "us-east-1"), None),
        Expect::Refused(RefusalCode::UnknownAccount),
    );
}

// ---- the parts the tables leave out --------------------------------------------------------------

#[test]
fn worker_plans_talk_over_the_session_queue() {
    let estate = estate();
    let plan = plan(&estate, &op_backup(CMK, None)).unwrap();
    let queue: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.action().as_str().starts_with("sqs:"))
        .map(|s| format!("{} {}", actor(&s.actor), s.action()))
        .collect();
    assert_eq!(
        queue,
        [
            "appliance sqs:CreateQueue",
            "appliance sqs:SetQueueAttributes",
            "appliance sqs:SendMessage",
            "temp-worker sqs:ReceiveMessage",
            "temp-worker sqs:SendMessage",
            "appliance sqs:ReceiveMessage",
        ]
    );
    assert!(plan
        .cleanup
        .iter()
        .any(|s| s.action().as_str() == "sqs:DeleteQueue"));
}

#[test]
fn every_assumed_role_is_assumed_by_the_appliance_before_it_acts() {
    let estate = estate();
    let plan = plan(&estate, &op_restore(CMK, Backup, (T, "eu-west-1"), None, None)).unwrap();
    let assumed: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.action().as_str() == "sts:AssumeRole")
        .map(|s| format!("{} {}", actor(&s.actor), s.resource()))
        .collect();
    assert_eq!(
        assumed,
        [
            "appliance role arn:aws:iam::111111111111:role/WorkerDeployment",
            // Assumed before the worker is launched, to prove it may remove what it restores.
            "appliance role arn:aws:iam::333333333333:role/Restore",
            "appliance role arn:aws:iam::111111111111:role/Repository",
        ]
    );
    for (i, step) in plan.steps.iter().enumerate() {
        if let Actor::Role(role) = &step.actor {
            let assumed_at = plan
                .steps
                .iter()
                .position(|s| matches!(&s.call, Call::AssumeRole { role: r } if r == role));
            assert!(
                assumed_at.is_some_and(|a| a < i),
                "step {i} acts as {role} before assuming it"
            );
        }
    }
}

#[test]
fn a_failed_restore_removes_what_it_restored() {
    let estate = estate();
    let plan = plan(&estate, &op_restore(CMK, Snapshot, (T, "us-east-1"), None, None)).unwrap();
    assert_eq!(
        compact(&plan.rollback),
        // The instance (with the volumes its launch made), then the restored volumes its
        // image was taken of.
        [
            "Restore@T ec2:TerminateInstances T/us-east-1",
            "Restore@T ec2:DeleteVolume T/us-east-1",
        ]
    );
}

#[test]
fn a_plan_read_back_from_json_is_refused_when_a_step_was_changed_by_hand() {
    let plan = bulwark_plan::plan(&estate(), &op_backup(CMK, Some(Placement::ProductionAccount))).unwrap();
    let json = serde_json::to_string(&plan).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    // The words say one call, the typed call another: refused, not run.
    let tampered = json.replacen("\"ec2:CreateSnapshots\"", "\"ec2:DeleteSnapshot\"", 1);
    let error = serde_json::from_str::<Plan>(&tampered).unwrap_err().to_string();
    assert!(error.contains("plan again"), "{error}");
}

#[test]
fn every_role_that_removes_something_proves_it_may_before_anything_is_created() {
    let estate = estate();
    for op in [
        op_backup(CMK, None),
        op_backup(EBS, Some(Placement::ProductionAccount)),
        op_restore(CMK, RestoreSource::Backup, (T, "eu-west-1"), None, None),
    ] {
        let plan = bulwark_plan::plan(&estate, &op).unwrap();
        let removers: std::collections::BTreeSet<_> = plan
            .cleanup
            .iter()
            .chain(&plan.rollback)
            .filter_map(|s| s.actor.role().cloned())
            .collect();
        let first_creation = plan.steps.iter().position(|s| !s.creates().is_empty()).unwrap();
        for role in &removers {
            let proof = plan
                .steps
                .iter()
                .position(|s| matches!(&s.call, Call::ProveCleanup { role: r } if r == role))
                .unwrap_or_else(|| panic!("{}: {role} proves nothing", plan.summary));
            assert!(
                proof < first_creation,
                "{}: {role} proves after a creation",
                plan.summary
            );
            assert_eq!(plan.steps[proof].actor, Actor::Role(role.clone()));
        }
    }
}
