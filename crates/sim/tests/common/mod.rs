//! Setup helpers: a two-account, two-region world in a temporary directory, roles with inline
//! policies written with `json!`, KMS key policies, and small constructors for ids and data.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bulwark_cloud::{CloudError, CreateVolume, Credentials, Ec2, ErrorKind, Sts, EBS_BLOCK_SIZE};
use bulwark_model::{AccountId, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_sim::{Sim, SimVolume};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The KMS actions the console's "use this key" statement grants.
pub const KEY_USE: &[&str] = &[
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
];

/// The console's "attach persistent resources" actions (granted with `GrantIsForAWSResource`).
pub const KEY_GRANTS: &[&str] = &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];

/// The two-account world: account A (111111111111, the source) and B (222222222222), each
/// in us-east-1 and eu-west-1.
pub struct World {
    pub sim: Sim,
    pub a: AccountId,
    pub b: AccountId,
    pub east: Region,
    pub west: Region,
    dir: TempDir,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("temporary directory");
        let sim = Sim::open(dir.path()).expect("open the embedded cloud");
        World {
            sim,
            a: account("111111111111"),
            b: account("222222222222"),
            east: region("us-east-1"),
            west: region("eu-west-1"),
            dir,
        }
    }

    /// The root credentials of `account`.
    pub fn root(&self, account: &AccountId) -> Credentials {
        self.sim.root_credentials(account).expect("root credentials")
    }

    /// Creates (or replaces) role `name` in `account`, trusted by the account itself, with the
    /// given inline policies, and returns a session of it (assumed with the account's root).
    pub fn role(&self, account: &AccountId, name: &str, policies: &[(&str, Value)]) -> Credentials {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": "sts:AssumeRole"
            }]
        });
        self.put_role(account, name, &trust, policies);
        self.sim
            .assume_role(&self.root(account), &role_arn(account, name), "test", None)
            .expect("assume the test role")
    }

    /// Creates (or replaces) role `name` with a trust policy and inline policies.
    pub fn put_role(&self, account: &AccountId, name: &str, trust: &Value, policies: &[(&str, Value)]) {
        let policies: Vec<(&str, String)> = policies.iter().map(|(n, d)| (*n, d.to_string())).collect();
        self.sim
            .put_role(account, "/", name, &trust.to_string(), &policies)
            .expect("put role");
    }

    /// Creates a customer managed key in `account` and `region` with `policy`; its ARN.
    pub fn cmk(&self, account: &AccountId, region: &Region, id: &str, policy: &Value) -> String {
        self.sim
            .create_key(account, region, id, &policy.to_string())
            .expect("create key")
    }

    /// A running instance of `account` in `region` with one empty 1 GiB volume per key
    /// (`None` unencrypted, `Some("aws/ebs")`, or a key ARN).
    pub fn instance(&self, account: &AccountId, region: &Region, id: &str, volumes: &[(&str, Option<&str>)]) {
        let volumes: Vec<SimVolume> = volumes
            .iter()
            .map(|(v, key)| SimVolume {
                id: volume(v),
                size_gib: 1,
                key: key.map(str::to_owned),
            })
            .collect();
        self.sim
            .create_instance(account, region, &instance(id), &volumes, &Default::default())
            .expect("create instance");
    }

    /// Writes `blocks` (index and fill byte, one 512 KiB block each) into a volume.
    pub fn write(&self, account: &AccountId, region: &Region, vol: &str, blocks: &[(u64, u8)]) {
        for &(index, fill) in blocks {
            self.sim
                .write_volume(
                    account,
                    region,
                    &volume(vol),
                    index * EBS_BLOCK_SIZE,
                    &block(fill),
                )
                .expect("write volume");
        }
    }

    /// A snapshot of `vol` taken by `account`'s root.
    pub fn snapshot(&self, account: &AccountId, region: &Region, vol: &str) -> SnapshotId {
        self.sim
            .create_snapshot(&self.root(account), region, &volume(vol), &[])
            .expect("create snapshot")
            .id
    }

    /// A snapshot of A's volume `vol` in us-east-1, shared with B.
    pub fn shared_snapshot(&self, vol: &str) -> SnapshotId {
        let snap = self.snapshot(&self.a, &self.east, vol);
        self.sim
            .modify_snapshot_sharing(
                &self.root(&self.a),
                &self.east,
                &snap,
                std::slice::from_ref(&self.b),
                &[],
            )
            .expect("share snapshot");
        snap
    }

    /// The key ARN of a volume, as DescribeVolumes answers it.
    pub fn volume_key(&self, who: &Credentials, region: &Region, vol: &VolumeId) -> Option<String> {
        let info = self
            .sim
            .describe_volumes(who, region, std::slice::from_ref(vol))
            .expect("describe volume");
        info[0].encryption.as_ref().map(|e| e.key_arn.clone())
    }

    /// The key ARN of a snapshot, as DescribeSnapshots answers it.
    pub fn snapshot_key(&self, who: &Credentials, region: &Region, snap: &SnapshotId) -> Option<String> {
        let info = self
            .sim
            .describe_snapshots(who, region, std::slice::from_ref(snap))
            .expect("describe snapshot");
        info[0].encryption.as_ref().map(|e| e.key_arn.clone())
    }
}

/// A key policy: the owner account's root may do everything (delegating to the owner's IAM
/// policies), plus `extra` statements.
pub fn key_policy(owner: &AccountId, extra: &[Value]) -> Value {
    let mut statements = vec![json!({
        "Sid": "Owner",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{owner}:root")},
        "Action": "kms:*",
        "Resource": "*"
    })];
    statements.extend(extra.iter().cloned());
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// A key policy statement letting `principal` (a role ARN or an account) use the key.
pub fn allow_use(principal: &str) -> Value {
    json!({
        "Sid": format!("Use {principal}"),
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": KEY_USE,
        "Resource": "*"
    })
}

/// A key policy statement letting `principal` create grants for AWS resources.
pub fn allow_grants(principal: &str) -> Value {
    json!({
        "Sid": format!("Grants {principal}"),
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": KEY_GRANTS,
        "Resource": "*",
        "Condition": {"Bool": {"kms:GrantIsForAWSResource": true}}
    })
}

/// An identity policy allowing `actions` on `resource`.
pub fn allow(actions: &[&str], resource: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]
    })
}

/// An identity policy allowing everything on EC2 (volumes, snapshots, instances).
pub fn ec2_all() -> Value {
    allow(&["ec2:*"], "*")
}

/// An identity policy allowing the EBS key actions on `key`, with `CreateGrant` restricted to
/// grants for AWS resources.
pub fn kms_for_ebs(key: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": KEY_USE, "Resource": key},
            {
                "Effect": "Allow",
                "Action": "kms:CreateGrant",
                "Resource": key,
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
            }
        ]
    })
}

/// CreateVolume from a snapshot, with the snapshot's size and no key asked for.
pub fn from_snapshot(snap: &SnapshotId) -> CreateVolume {
    CreateVolume {
        snapshot: Some(snap.clone()),
        ..CreateVolume::default()
    }
}

/// Asserts that `result` failed with `code` and `kind`, and returns the error.
#[track_caller]
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, CloudError>,
    code: &str,
    kind: ErrorKind,
) -> CloudError {
    let error = result.expect_err(&format!("expected {code}"));
    assert_eq!((error.code.as_str(), error.kind), (code, kind), "{error}");
    error
}

/// A 512 KiB block filled with `fill` (with its index-independent pattern).
pub fn block(fill: u8) -> Vec<u8> {
    let mut data = vec![fill; EBS_BLOCK_SIZE as usize];
    data[0] = fill.wrapping_add(1);
    data
}

/// The base64 SHA-256 of `data`, as the EBS direct APIs write checksums.
pub fn sha256_b64(data: &[u8]) -> String {
    BASE64.encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// The linear checksum of CompleteSnapshot: SHA-256 over the raw block checksums in index order.
pub fn linear_checksum(checksums: &[String]) -> String {
    let mut all = Vec::new();
    for c in checksums {
        all.extend(BASE64.decode(c).expect("base64 checksum"));
    }
    sha256_b64(&all)
}

pub fn account(s: &str) -> AccountId {
    s.parse().expect("account id")
}

pub fn region(s: &str) -> Region {
    s.parse().expect("region")
}

pub fn volume(s: &str) -> VolumeId {
    s.parse().expect("volume id")
}

pub fn instance(s: &str) -> InstanceId {
    s.parse().expect("instance id")
}

pub fn role_arn(account: &AccountId, name: &str) -> RoleArn {
    format!("arn:aws:iam::{account}:role/{name}")
        .parse()
        .expect("role ARN")
}
