//! Setting the world up and looking at it from outside: what an AWS administrator does in the
//! console before Bulwark runs (accounts, keys and their policies, roles, instances with data),
//! and the inventory tests and the demo use to prove that a session left nothing behind.
//! None of this is part of the cloud traits and none of it is authorized.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bulwark_cloud::{CloudError, Credentials, ErrorKind, Tag, EBS_BLOCK_SIZE};
use bulwark_model::{AccountId, Action, InstanceId, Region, VolumeId};
use ring::rand::{SecureRandom, SystemRandom};

use crate::rules::{region_mut, resolve_key};
use crate::state::{Identity, Instance, Key, Profile, Role, Session, Volume, World};
use crate::{Sim, SimError};

/// Random bytes.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system generator fails only if the OS has no entropy source at all.
    SystemRandom::new().fill(&mut out).unwrap_or_else(|_| out.fill(7));
    out
}

/// Issues credentials for `identity`.
/// Role sessions last one hour, AssumeRole's default (and the most a chained role session
/// may last), unless a test made a role's shorter; expired ones are forgotten as new ones are
/// issued (so the world does not grow with every session), and are then invalid like any
/// unknown key.
pub(crate) fn issue(world: &mut World, identity: Identity) -> Credentials {
    const ROLE_SESSION_SECS: u64 = 3600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    world.sessions.retain(|_, s| s.expires.is_none_or(|e| e > now));
    let expires = match &identity {
        Identity::Role { account, name, .. } => Some(
            now + world
                .session_seconds
                .get(&format!("{account}/{name}"))
                .copied()
                .unwrap_or(ROLE_SESSION_SECS),
        ),
        Identity::Root(_) => None,
    };
    let access_key_id = format!("ASIA{}", hex::encode_upper(random_bytes::<8>()));
    let secret = hex::encode(random_bytes::<20>());
    world.sessions.insert(
        access_key_id.clone(),
        Session {
            identity,
            secret: secret.clone(),
            expires,
        },
    );
    Credentials {
        access_key_id,
        secret_access_key: secret,
        session_token: Some(hex::encode(random_bytes::<16>())),
    }
}

/// The image the instances [`Sim::create_instance`] makes were launched from (a public image
/// the embedded cloud does not hold).
pub const LAUNCHED_FROM: &str = "ami-0a1b2c3d4e5f60718";

/// The root device of the instances [`Sim::create_instance`] makes.
pub const ROOT_DEVICE: &str = "/dev/xvda";

/// A volume of an instance to create.
#[derive(Clone, Debug)]
pub struct SimVolume {
    /// Its id.
    pub id: VolumeId,
    /// Size in GiB.
    pub size_gib: u32,
    /// Its key: a key ARN, `aws/ebs`, or `None` for unencrypted.
    pub key: Option<String>,
}

/// Everything that exists, by name, for before/after comparisons.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// One line per resource: `volume vol-… (A, R)`, `share snap-… with B`, ...
    pub resources: BTreeSet<String>,
}

impl Inventory {
    /// What `self` has that `before` had not.
    pub fn added_since(&self, before: &Inventory) -> Vec<String> {
        self.resources.difference(&before.resources).cloned().collect()
    }
}

impl fmt::Display for Inventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.resources {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Sim {
    fn admin<T>(&self, f: impl FnOnce(&mut World) -> Result<T, CloudError>) -> Result<T, SimError> {
        let mut world = self.inner.world()?;
        let out = f(&mut world)?;
        world.save()?;
        Ok(out)
    }

    /// Credentials of an account's root user (created with the account).
    pub fn root_credentials(&self, account: &AccountId) -> Result<Credentials, SimError> {
        self.admin(|w| {
            w.accounts.entry(account.clone()).or_default();
            // An account has one set of root keys; every caller gets the same.
            let existing = w
                .sessions
                .iter()
                .find(|(_, s)| s.identity == Identity::Root(account.clone()));
            if let Some((id, s)) = existing {
                return Ok(Credentials {
                    access_key_id: id.clone(),
                    secret_access_key: s.secret.clone(),
                    session_token: None,
                });
            }
            let mut keys = issue(w, Identity::Root(account.clone()));
            keys.session_token = None;
            Ok(keys)
        })
    }

    /// Creates a customer managed key with `id` (a UUID) and `policy`; returns its ARN.
    pub fn create_key(
        &self,
        account: &AccountId,
        region: &Region,
        id: &str,
        policy: &str,
    ) -> Result<String, SimError> {
        self.admin(|w| {
            let material = hex::encode(random_bytes::<32>());
            region_mut(w, account, region).keys.insert(
                id.to_owned(),
                Key {
                    id: id.to_owned(),
                    aws_managed: false,
                    state: "Enabled".into(),
                    spec: "SYMMETRIC_DEFAULT".into(),
                    policy: policy.to_owned(),
                    material,
                    grants: Vec::new(),
                },
            );
            Ok(crate::auth::key_arn(account, region, id))
        })
    }

    /// Replaces a key's policy, or sets its state (`Enabled`, `Disabled`, `PendingDeletion`).
    pub fn update_key(
        &self,
        key_arn: &str,
        policy: Option<&str>,
        state: Option<&str>,
    ) -> Result<(), SimError> {
        self.admin(|w| {
            let (owner, region, id) = locate_key(w, key_arn)?;
            let key = region_mut(w, &owner, &region).keys.get_mut(&id).ok_or_else(|| {
                CloudError::not_found(Action::KmsPutKeyPolicy, "NotFoundException", key_arn)
            })?;
            if let Some(p) = policy {
                key.policy = p.to_owned();
            }
            if let Some(s) = state {
                key.state = s.to_owned();
            }
            Ok(())
        })
    }

    /// Sets the default EBS key of an account and region (a key ARN; `None` resets it to
    /// `aws/ebs`) and whether new volumes are encrypted by default.
    pub fn set_ebs_defaults(
        &self,
        account: &AccountId,
        region: &Region,
        default_key: Option<&str>,
        encryption_by_default: bool,
    ) -> Result<(), SimError> {
        self.admin(|w| {
            let id = match default_key {
                Some(k) => Some(resolve_key(w, Action::Ec2ModifyEbsDefaultKmsKeyId, account, region, k)?.1),
                None => None,
            };
            let r = region_mut(w, account, region);
            r.default_key = id;
            r.encryption_by_default = encryption_by_default;
            Ok(())
        })
    }

    /// Creates or replaces a role with its trust policy and inline policies.
    pub fn put_role(
        &self,
        account: &AccountId,
        path: &str,
        name: &str,
        trust: &str,
        policies: &[(&str, String)],
    ) -> Result<(), SimError> {
        self.admin(|w| {
            w.accounts.entry(account.clone()).or_default().roles.insert(
                name.to_owned(),
                Role {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    trust: trust.to_owned(),
                    policies: policies
                        .iter()
                        .map(|(n, d)| ((*n).to_owned(), d.clone()))
                        .collect(),
                    tags: Vec::new(),
                },
            );
            Ok(())
        })
    }

    /// The inline policies of a role, by name.
    pub fn role_policies(&self, account: &AccountId, name: &str) -> Vec<(String, String)> {
        let Ok(w) = self.inner.read() else {
            return Vec::new();
        };
        w.accounts
            .get(account)
            .and_then(|a| a.roles.get(name))
            .map(|r| r.policies.iter().map(|(n, d)| (n.clone(), d.clone())).collect())
            .unwrap_or_default()
    }

    /// Creates an instance profile holding `role`, already visible to EC2.
    pub fn put_instance_profile(&self, account: &AccountId, name: &str, role: &str) -> Result<(), SimError> {
        self.admin(|w| {
            w.accounts.entry(account.clone()).or_default().profiles.insert(
                name.to_owned(),
                Profile {
                    path: "/".into(),
                    name: name.to_owned(),
                    role: Some(role.to_owned()),
                    unseen_launches: 0,
                },
            );
            Ok(())
        })
    }

    /// Creates a running instance with empty volumes, of type `m6i.large`, in the default
    /// subnet of its region's first zone with the default security group, booted (x86_64,
    /// UEFI preferred, ENA) from [`LAUNCHED_FROM`] with its first volume as the root, at
    /// [`ROOT_DEVICE`], deleted on termination.
    pub fn create_instance(
        &self,
        account: &AccountId,
        region: &Region,
        id: &InstanceId,
        volumes: &[SimVolume],
        tags: &BTreeMap<String, String>,
    ) -> Result<(), SimError> {
        self.admin(|w| {
            let mut attached = Vec::new();
            for (i, v) in volumes.iter().enumerate() {
                let key = match v.key.as_deref() {
                    None => None,
                    Some("aws/ebs") => Some(crate::rules::aws_ebs_key(w, account, region)),
                    Some(k) => Some(resolve_key(w, Action::Ec2CreateVolume, account, region, k)?.1),
                }
                .map(|id| crate::auth::key_arn(account, region, &id));
                // The root at Amazon Linux's device name, the others after it.
                let device = if i == 0 {
                    ROOT_DEVICE.to_owned()
                } else {
                    format!("/dev/sd{}", (b'a' + i as u8) as char)
                };
                w.next_id += 1;
                let lineage = w.next_id;
                region_mut(w, account, region).volumes.insert(
                    v.id.clone(),
                    Volume {
                        size_gib: v.size_gib,
                        snapshot: None,
                        key,
                        attachment: Some((id.clone(), device.clone())),
                        tags: Vec::new(),
                        lineage,
                        blocks: Default::default(),
                        zone: String::new(),
                        ready_at: 0,
                        attach_at: 0,
                        detach_at: None,
                        // What the console makes today.
                        performance: bulwark_model::VolumeType::Gp3
                            .performance(v.size_gib, None, None)
                            .ok(),
                    },
                );
                attached.push((v.id.clone(), device));
            }
            region_mut(w, account, region).instances.insert(
                id.clone(),
                Instance {
                    state: "running".into(),
                    state_reason: None,
                    profile: None,
                    volumes: attached,
                    tags: std::iter::once(Tag::new("Name", id.to_string()))
                        .chain(
                            tags.iter()
                                .filter(|(k, _)| *k != "Name")
                                .map(|(k, v)| Tag::new(k, v)),
                        )
                        .collect(),
                    user_data: String::new(),
                    zone: String::new(),
                    subnet: Some(default_subnet(account, region)),
                    security_groups: vec![default_security_group(account, region)],
                    instance_type: "m6i.large".into(),
                    ready_at: 0,
                    terminate_at: None,
                    imds_v2_only: true,
                    boot: bulwark_cloud::InstanceBoot {
                        image: LAUNCHED_FROM.parse().ok(),
                        architecture: Some("x86_64".into()),
                        boot_mode: Some("uefi-preferred".into()),
                        root_device: Some(ROOT_DEVICE.into()),
                        ena_support: true,
                        key_name: None,
                    },
                    deleted_on_termination: vec![ROOT_DEVICE.into()],
                },
            );
            Ok(())
        })
    }

    /// Where a volume is: its account and region.
    pub fn find_volume(&self, volume: &VolumeId) -> Option<(AccountId, Region)> {
        let w = self.inner.read().ok()?;
        w.accounts.iter().find_map(|(account, a)| {
            a.regions
                .iter()
                .find(|(_, r)| r.volumes.contains_key(volume))
                .map(|(region, _)| (account.clone(), region.clone()))
        })
    }

    /// Writes `data` into a volume at byte `offset`, as a program on an instance it is attached
    /// to would: the bytes of the volume's blocks around it stay as they were.
    pub fn write_volume(
        &self,
        account: &AccountId,
        region: &Region,
        volume: &VolumeId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), SimError> {
        let io = |source| SimError::Io {
            path: self.inner.dir.clone(),
            error: source,
        };
        let block = EBS_BLOCK_SIZE;
        let end = offset.saturating_add(data.len() as u64);
        let (first, last) = (offset / block, end.div_ceil(block));
        // The blocks the write covers only in part keep their other bytes.
        let edges: Vec<(u64, Option<crate::store::BlockHash>)> = {
            let w = self.inner.read()?;
            let v = w
                .accounts
                .get(account)
                .and_then(|a| a.regions.get(region))
                .and_then(|r| r.volumes.get(volume));
            [first, last.saturating_sub(1)]
                .into_iter()
                .map(|i| (i, v.and_then(|v| v.blocks.get(&i).cloned())))
                .collect()
        };
        let mut hashes = Vec::new();
        for index in first..last {
            let start = index * block;
            let mut whole = vec![0u8; block as usize];
            if start < offset || start + block > end {
                if let Some((_, Some(hash))) = edges.iter().find(|(i, _)| *i == index) {
                    self.inner.store.read(Some(hash), &mut whole).map_err(io)?;
                }
            }
            let (from, to) = (start.max(offset), (start + block).min(end));
            whole[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            hashes.push((index, self.inner.store.put(&whole).map_err(io)?));
        }
        self.admin(|w| {
            let v = volume_mut(w, account, region, volume)?;
            if end > u64::from(v.size_gib) << 30 {
                return Err(CloudError::new(
                    Action::Ec2DescribeVolumes,
                    ErrorKind::Invalid,
                    "InvalidParameterValue",
                    format!(
                        "{} bytes at byte {offset} end past the end of {volume} ({} GiB)",
                        data.len(),
                        v.size_gib
                    ),
                ));
            }
            for (index, hash) in hashes {
                match hash {
                    Some(h) => v.blocks.insert(index, h),
                    None => v.blocks.remove(&index),
                };
            }
            Ok(())
        })
    }

    /// Grows a volume to `size_gib`, as ModifyVolume does (EBS volumes only grow): its blocks
    /// stay, the new space reads as zeros.
    pub fn grow_volume(
        &self,
        account: &AccountId,
        region: &Region,
        volume: &VolumeId,
        size_gib: u32,
    ) -> Result<(), SimError> {
        self.admin(|w| {
            let v = volume_mut(w, account, region, volume)?;
            if size_gib <= v.size_gib || size_gib > bulwark_model::MAX_VOLUME_GIB {
                return Err(CloudError::invalid(
                    Action::Ec2DescribeVolumes,
                    "InvalidParameterValue",
                    format!(
                        "{volume} has {} GiB: a volume grows, to at most {} GiB",
                        v.size_gib,
                        bulwark_model::MAX_VOLUME_GIB
                    ),
                ));
            }
            v.size_gib = size_gib;
            Ok(())
        })
    }

    /// A digest of a volume's content: equal digests mean byte-identical volumes (zero blocks
    /// are never stored, so equal content means equal block maps).
    pub fn volume_digest(
        &self,
        account: &AccountId,
        region: &Region,
        volume: &VolumeId,
    ) -> Option<(u32, String)> {
        let w = self.inner.world().ok()?;
        let v = volume_in(&w, account, region, volume)?;
        let mut h = blake3::Hasher::new();
        for (index, hash) in &v.blocks {
            h.update(&index.to_le_bytes());
            h.update(&hash.0);
        }
        Some((v.size_gib, h.finalize().to_hex().to_string()))
    }

    /// A digest of a snapshot's content, comparable with [`Sim::volume_digest`]'s.
    pub fn snapshot_digest(
        &self,
        region: &Region,
        snapshot: &bulwark_model::SnapshotId,
    ) -> Option<(u32, String, Option<String>)> {
        let w = self.inner.world().ok()?;
        let s = w
            .accounts
            .values()
            .find_map(|a| a.regions.get(region)?.snapshots.get(snapshot))?;
        Some((s.size_gib, digest(&s.blocks), s.key.clone()))
    }

    /// The availability zone of a volume, and its type, IOPS and throughput.
    pub fn volume_placement(
        &self,
        account: &AccountId,
        region: &Region,
        volume: &VolumeId,
    ) -> Option<(String, Option<bulwark_model::Performance>)> {
        let w = self.inner.read().ok()?;
        let v = volume_in(&w, account, region, volume)?;
        Some((v.zone.clone(), v.performance))
    }

    /// The key ARN of a volume, if encrypted.
    pub fn volume_key(&self, account: &AccountId, region: &Region, volume: &VolumeId) -> Option<String> {
        let w = self.inner.read().ok()?;
        let v = volume_in(&w, account, region, volume)?;
        v.key.clone()
    }

    /// How every instance of `account` in `region` was launched, terminated ones too, by id.
    pub fn launches(&self, account: &AccountId, region: &Region) -> Vec<Launch> {
        let Ok(w) = self.inner.read() else {
            return Vec::new();
        };
        let Some(r) = w.accounts.get(account).and_then(|a| a.regions.get(region)) else {
            return Vec::new();
        };
        r.instances
            .iter()
            .map(|(id, i)| Launch {
                id: id.clone(),
                instance_type: i.instance_type.clone(),
                subnet: i.subnet.clone(),
                security_groups: i.security_groups.clone(),
                tags: i.tags.clone(),
            })
            .collect()
    }

    /// Makes the sessions of role `name` (`path/name`) of `account` last `seconds`, instead of
    /// AWS's default hour: sessions issued from now on.
    pub fn set_session_duration(
        &self,
        account: &AccountId,
        name: &str,
        seconds: u64,
    ) -> Result<(), SimError> {
        self.admin(|w| {
            w.session_seconds
                .insert(format!("{account}/{name}"), seconds.max(1));
            Ok(())
        })
    }

    /// Creates an S3 bucket owned by `account`.
    pub fn create_bucket(&self, bucket: &str, account: &AccountId) -> Result<(), SimError> {
        self.admin(|w| {
            w.buckets.insert(bucket.to_owned(), account.clone());
            Ok(())
        })
        .and_then(|()| {
            std::fs::create_dir_all(self.inner.dir.join("s3").join(bucket)).map_err(|source| SimError::Io {
                path: self.inner.dir.clone(),
                error: source,
            })
        })
    }

    /// From now on, records every message sent and every queue created, for
    /// [`Sim::sent_messages`] and [`Sim::created_queues`] (tests: what someone who can read the
    /// queues sees).
    pub fn tap_queues(&self) {
        crate::lock(&self.inner.wiretap).on = true;
    }

    /// Every message body sent on any queue since [`Sim::tap_queues`], with its queue's URL:
    /// what someone who can read the queues sees.
    pub fn sent_messages(&self) -> Vec<(String, String)> {
        crate::lock(&self.inner.wiretap).sent.clone()
    }

    /// Every queue created since [`Sim::tap_queues`] (deleted ones too): its URL, whether it is encrypted at
    /// rest, and how many seconds it keeps a message.
    pub fn created_queues(&self) -> Vec<(String, bool, u64)> {
        crate::lock(&self.inner.wiretap).created.clone()
    }

    /// Puts `body` on the next queue a message is sent to, just before that message, as
    /// someone who can write the queues would (a forged task or report).
    pub fn plant_message(&self, body: &str) {
        crate::lock(&self.inner.wiretap).planted.push(body.to_owned());
    }

    /// Every resource that a session could leave behind: volumes, snapshots, their share
    /// permissions, instances not terminated, roles, instance profiles, queues, KMS grants.
    pub fn inventory(&self) -> Inventory {
        let Ok(w) = self.inner.world() else {
            return Inventory::default();
        };
        let mut out = BTreeSet::new();
        for (account, a) in &w.accounts {
            for (name, r) in &a.roles {
                out.insert(format!("role {}{name} ({account})", r.path));
            }
            for (name, p) in &a.profiles {
                out.insert(format!(
                    "instance profile {}{name} ({account}) holding {:?}",
                    p.path, p.role
                ));
            }
            for (region, r) in &a.regions {
                for (id, v) in &r.volumes {
                    let at = v
                        .attachment
                        .as_ref()
                        .map_or(String::new(), |(i, d)| format!(" attached to {i} as {d}"));
                    out.insert(format!("volume {id} ({account}, {region}){at}"));
                }
                for (id, s) in &r.snapshots {
                    out.insert(format!("snapshot {id} of {} ({account}, {region})", s.volume));
                    for with in &s.shared_with {
                        out.insert(format!("share of snapshot {id} with {with}"));
                    }
                }
                for (id, i) in &r.instances {
                    if i.state != "terminated" {
                        out.insert(format!("instance {id} ({account}, {region}) {}", i.state));
                    }
                }
                for (id, image) in &r.images {
                    out.insert(format!("image {id} {} ({account}, {region})", image.spec.name));
                }
                for name in r.queues.keys() {
                    out.insert(format!("queue {name} ({account}, {region})"));
                }
                for key in r.keys.values() {
                    for g in &key.grants {
                        out.insert(format!("grant {} on key {} to {}", g.id, key.id, g.grantee));
                    }
                }
            }
        }
        Inventory { resources: out }
    }
}

/// A digest of a block map: equal maps, equal content.
fn digest(blocks: &crate::store::BlockMap) -> String {
    let mut h = blake3::Hasher::new();
    for (index, hash) in blocks {
        h.update(&index.to_le_bytes());
        h.update(&hash.0);
    }
    h.finalize().to_hex().to_string()
}

/// The owner, region and id of a key ARN.
pub(crate) fn locate_key(w: &World, arn: &str) -> Result<(AccountId, Region, String), CloudError> {
    let _ = w;
    locate_key_arn(arn).ok_or_else(|| {
        CloudError::invalid(
            Action::KmsDescribeKey,
            "InvalidArnException",
            format!("{arn} is not a key ARN"),
        )
    })
}

/// The owner, region and id of a key ARN (`arn:aws:kms:R:A:key/ID`).
pub(crate) fn locate_key_arn(arn: &str) -> Option<(AccountId, Region, String)> {
    let rest = arn.strip_prefix("arn:aws:kms:")?;
    let mut parts = rest.splitn(3, ':');
    let region: Region = parts.next()?.parse().ok()?;
    let account: AccountId = parts.next()?.parse().ok()?;
    let id = parts.next()?.strip_prefix("key/")?;
    Some((account, region, id.to_owned()))
}

/// How an instance was launched (RunInstances' parameters the embedded cloud keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The instance.
    pub id: InstanceId,
    /// Its type.
    pub instance_type: String,
    /// Its subnet, if one was given.
    pub subnet: Option<String>,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// Its tags.
    pub tags: Vec<Tag>,
}

/// The id of the default VPC's subnet of `region`'s first zone in `account`: fixed, so that an
/// estate's instances are in the same network each time the embedded cloud is made.
pub(crate) fn default_subnet(account: &AccountId, region: &Region) -> String {
    format!("subnet-0{account}{:04x}", region_number(region))
}

/// The id of the default VPC's default security group of `region` in `account`.
pub(crate) fn default_security_group(account: &AccountId, region: &Region) -> String {
    format!("sg-0{account}{:04x}", region_number(region))
}

/// A number that tells regions apart in made-up ids.
fn region_number(region: &Region) -> u16 {
    region
        .as_str()
        .bytes()
        .fold(0u16, |n, b| n.wrapping_mul(31).wrapping_add(u16::from(b)))
}

/// A volume of the world, by account, region and id.
fn volume_in<'w>(
    w: &'w World,
    account: &AccountId,
    region: &Region,
    volume: &VolumeId,
) -> Option<&'w Volume> {
    w.accounts.get(account)?.regions.get(region)?.volumes.get(volume)
}

/// A volume changed by administration, not an API call: a missing one is reported as
/// DescribeVolumes would.
fn volume_mut<'w>(
    w: &'w mut crate::state::World,
    account: &AccountId,
    region: &Region,
    volume: &VolumeId,
) -> Result<&'w mut crate::state::Volume, CloudError> {
    region_mut(w, account, region)
        .volumes
        .get_mut(volume)
        .ok_or_else(|| {
            CloudError::not_found(
                Action::Ec2DescribeVolumes,
                "InvalidVolume.NotFound",
                volume.as_str(),
            )
        })
}
