//! The embedded cloud's answers to every call of [`Cloud`]: authorize, apply AWS's rules,
//! change the world, save it. Each call checks everything before it changes anything, so a
//! refused call leaves the world as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bulwark_cloud::policy::ResourcePolicyKind;
use bulwark_cloud::{
    BlockPage, BlockRef, CallerIdentity, Cloud, CloudError, CopySnapshot, CreateVolume, Credentials,
    ErrorKind, Grant, InstanceInfo, KeyInfo, KeyManager, Message, Result, RoleInfo, RunInstance,
    SharedCredentials, SnapshotInfo, StartSnapshot, Tag, VolumeInfo, EBS_BLOCK_SIZE,
};
use bulwark_model::{AccountId, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_storage::Backend;
use ring::aead;

use bulwark_cloud::checksum::{block_checksum, decode, linear_checksum};

use crate::auth::{key_arn, role_arn, Caller, Guard};
use crate::devices::{boot, Machine};
use crate::rules::{aws_ebs_key, default_key, ebs_may_use, new_id, region_mut, resolve_key};
use crate::state::{GrantState, Identity, Instance, Profile, RegionState, Role, Snapshot, Volume, World};
use crate::{lock, Fault, Inner, Sim};

/// Blocks per page of the EBS direct API listings (AWS's maximum `MaxResults`).
const PAGE: usize = 10_000;

impl Sim {
    /// Runs one call: resolves the caller, fires a pending fault, runs `f`, and saves the world
    /// if `f` succeeded and may have changed it (or a fault was consumed).
    fn call<T>(
        &self,
        action: &str,
        who: &Credentials,
        f: impl FnOnce(&Caller, &mut World) -> Result<T>,
    ) -> Result<T> {
        let mut world = self.inner.world();
        let identity = Inner::identity(&world, action, who)?;
        if let Err(e) = Inner::fault(&mut world, action) {
            self.save(&world, action)?;
            return Err(e);
        }
        let caller = Caller {
            identity,
            action: action.to_owned(),
        };
        let out = f(&caller, &mut world)?;
        if saved_after(action) {
            self.save(&world, action)?;
        }
        Ok(out)
    }

    fn save(&self, world: &World, action: &str) -> Result<()> {
        self.inner
            .save(world)
            .map_err(|e| CloudError::new(action, ErrorKind::Unavailable, "InternalError", e.to_string()))
    }
}

// ---- small helpers -------------------------------------------------------------------------

/// Whether the world is saved after a successful `action`: not after reads (Describe*, List*,
/// Get*), and not after each PutSnapshotBlock, whose blocks are in the block store already and
/// whose checksums the next saving call (CompleteSnapshot at the latest) writes; an appliance
/// that dies meanwhile leaves a pending snapshot, which its cleanup deletes all the same. The
/// state file holds every volume's block map, so saving at each of a transfer's thousands of
/// block calls would cost more than the transfer.
fn saved_after(action: &str) -> bool {
    let verb = action.split_once(':').map_or(action, |(_, v)| v);
    !(verb.starts_with("Describe")
        || verb.starts_with("List")
        || verb.starts_with("Get")
        || verb == "PutSnapshotBlock")
}

fn snapshot_arn(region: &Region, id: &SnapshotId) -> String {
    format!("arn:aws:ec2:{region}::snapshot/{id}")
}

fn volume_arn(account: &AccountId, region: &Region, id: &str) -> String {
    format!("arn:aws:ec2:{region}:{account}:volume/{id}")
}

fn instance_arn(account: &AccountId, region: &Region, id: &str) -> String {
    format!("arn:aws:ec2:{region}:{account}:instance/{id}")
}

fn profile_arn(account: &AccountId, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:instance-profile{path}{name}")
}

fn region_of<'w>(world: &'w World, account: &AccountId, region: &Region) -> Option<&'w RegionState> {
    world.accounts.get(account)?.regions.get(region)
}

/// Finds a snapshot the caller owns or that is shared with the caller's account.
fn visible_snapshot(
    world: &World,
    caller: &Caller,
    region: &Region,
    id: &SnapshotId,
) -> Result<(AccountId, Snapshot)> {
    for (owner, a) in &world.accounts {
        if let Some(s) = a.regions.get(region).and_then(|r| r.snapshots.get(id)) {
            if owner == caller.account() || s.shared_with.contains(caller.account()) {
                return Ok((owner.clone(), s.clone()));
            }
        }
    }
    Err(CloudError::not_found(
        &caller.action,
        "InvalidSnapshot.NotFound",
        format!(
            "The snapshot '{id}' does not exist in {region}, or is not shared with account {}.",
            caller.account()
        ),
    ))
}

fn own_snapshot<'w>(
    world: &'w mut World,
    caller: &Caller,
    region: &Region,
    id: &SnapshotId,
) -> Result<&'w mut Snapshot> {
    let action = caller.action.clone();
    region_mut(world, caller.account(), region)
        .snapshots
        .get_mut(id)
        .ok_or_else(|| {
            CloudError::not_found(
                &action,
                "InvalidSnapshot.NotFound",
                format!("The snapshot '{id}' does not exist."),
            )
        })
}

fn own_volume<'w>(
    world: &'w mut World,
    caller: &Caller,
    region: &Region,
    id: &VolumeId,
) -> Result<&'w mut Volume> {
    let action = caller.action.clone();
    region_mut(world, caller.account(), region)
        .volumes
        .get_mut(id)
        .ok_or_else(|| {
            CloudError::not_found(
                &action,
                "InvalidVolume.NotFound",
                format!("The volume '{id}' does not exist."),
            )
        })
}

fn own_instance<'w>(
    world: &'w mut World,
    caller: &Caller,
    region: &Region,
    id: &InstanceId,
) -> Result<&'w mut Instance> {
    let action = caller.action.clone();
    region_mut(world, caller.account(), region)
        .instances
        .get_mut(id)
        .ok_or_else(|| {
            CloudError::not_found(
                &action,
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{id}' does not exist"),
            )
        })
}

/// Tagging on create needs `ec2:CreateTags` on what is created.
fn check_tags(world: &World, caller: &Caller, tags: &[Tag], arn: &str) -> Result<()> {
    if tags.is_empty() {
        Ok(())
    } else {
        caller.check(
            world,
            "ec2:CreateTags",
            arn,
            &[(
                "ec2:CreateAction",
                caller.action.trim_start_matches("ec2:").to_owned(),
            )],
            None,
        )
    }
}

/// The (owner, region, id) of a key ARN stored on a volume or snapshot.
fn key_parts(arn: &str) -> Option<(AccountId, Region, String)> {
    crate::admin::locate_key_arn(arn)
}

fn ebs_may_use_arn(world: &World, caller: &Caller, arn: &str) -> Result<()> {
    let (owner, region, id) = key_parts(arn).ok_or_else(|| {
        CloudError::invalid(
            &caller.action,
            "InvalidKMSKey.Id",
            format!("{arn} is not a key ARN"),
        )
    })?;
    ebs_may_use(world, caller, &owner, &region, &id)
}

fn resolve_key_arn(world: &mut World, caller: &Caller, region: &Region, reference: &str) -> Result<String> {
    let (owner, id) = resolve_key(world, &caller.action, caller.account(), region, reference)?;
    Ok(key_arn(&owner, region, &id))
}

fn default_key_arn(world: &mut World, account: &AccountId, region: &Region) -> String {
    let (owner, id) = default_key(world, account, region);
    key_arn(&owner, region, &id)
}

fn snapshot_info(owner: &AccountId, region: &Region, id: &SnapshotId, s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: id.clone(),
        owner: owner.clone(),
        region: region.clone(),
        volume: s.volume.clone(),
        size_gib: s.size_gib,
        state: s.state.clone(),
        encryption: s.key.clone().map(|key_arn| bulwark_cloud::Encryption { key_arn }),
        shared_with: s.shared_with.clone(),
        tags: s.tags.clone(),
    }
}

fn volume_info(owner: &AccountId, region: &Region, id: &VolumeId, v: &Volume) -> VolumeInfo {
    VolumeInfo {
        id: id.clone(),
        owner: owner.clone(),
        region: region.clone(),
        size_gib: v.size_gib,
        snapshot: v.snapshot.clone(),
        state: if v.attachment.is_some() {
            "in-use"
        } else {
            "available"
        }
        .into(),
        encryption: v.key.clone().map(|key_arn| bulwark_cloud::Encryption { key_arn }),
        attachment: v.attachment.clone(),
        tags: v.tags.clone(),
    }
}

fn instance_info(owner: &AccountId, region: &Region, id: &InstanceId, i: &Instance) -> InstanceInfo {
    InstanceInfo {
        id: id.clone(),
        owner: owner.clone(),
        region: region.clone(),
        state: i.state.clone(),
        state_reason: i.state_reason.clone(),
        volumes: i.volumes.clone(),
        instance_profile: i.profile.clone(),
        tags: i.tags.clone(),
        availability_zone: Some(zone_of(region, &i.zone)),
    }
}

/// Removes the first pending fault that `pick` takes, answering what it took from it.
fn take_fault<T>(world: &mut World, pick: impl Fn(&Fault) -> Option<T>) -> Option<T> {
    let (i, value) = world
        .faults
        .iter()
        .enumerate()
        .find_map(|(i, f)| pick(f).map(|v| (i, v)))?;
    world.faults.remove(i);
    Some(value)
}

/// An availability zone as stored: empty (older state) is the region's first.
fn zone_of(region: &Region, zone: &str) -> String {
    if zone.is_empty() {
        format!("{region}a")
    } else {
        zone.to_owned()
    }
}

/// The zone a call asks for, which must be one of the region's (a to f here); `None` is the
/// region's first.
fn zone_in(action: &str, region: &Region, zone: Option<&str>) -> Result<String> {
    match zone {
        None => Ok(zone_of(region, "")),
        Some(z)
            if z.strip_prefix(region.as_str())
                .is_some_and(|l| matches!(l, "a" | "b" | "c" | "d" | "e" | "f")) =>
        {
            Ok(z.to_owned())
        }
        Some(z) => Err(CloudError::invalid(
            action,
            "InvalidParameterValue",
            format!("Invalid availability zone: [{z}]"),
        )),
    }
}

fn parse_id<T: std::str::FromStr>(action: &str, code: &str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| CloudError::invalid(action, code, format!("'{s}' is not a valid id")))
}

/// The account, region and name of a queue URL (`https://sqs.R.amazonaws.com/A/name`).
fn parse_queue(action: &str, url: &str) -> Result<(AccountId, Region, String)> {
    let bad = || CloudError::invalid(action, "InvalidAddress", format!("{url} is not a queue URL"));
    let rest = url.strip_prefix("https://sqs.").ok_or_else(bad)?;
    let (region, rest) = rest.split_once(".amazonaws.com/").ok_or_else(bad)?;
    let (account, name) = rest.split_once('/').ok_or_else(bad)?;
    Ok((
        account.parse().map_err(|_| bad())?,
        region.parse().map_err(|_| bad())?,
        name.to_owned(),
    ))
}

fn no_queue(action: &str, url: &str) -> CloudError {
    CloudError::not_found(
        action,
        "AWS.SimpleQueueService.NonExistentQueue",
        format!("The specified queue {url} does not exist."),
    )
}

fn validation(action: &str, reason: &str, message: impl Into<String>) -> CloudError {
    CloudError::invalid(
        action,
        "ValidationException",
        format!("{reason}: {}", message.into()),
    )
}

/// Checks a queue call against the caller's policies and the queue's policy.
fn check_queue(world: &World, caller: &Caller, url: &str) -> Result<(AccountId, Region, String)> {
    let (account, region, name) = parse_queue(&caller.action, url)?;
    let queue = region_of(world, &account, &region)
        .and_then(|r| r.queues.get(&name))
        .ok_or_else(|| no_queue(&caller.action, url))?;
    let arn = format!("arn:aws:sqs:{region}:{account}:{name}");
    let policy = queue
        .policy
        .clone()
        .unwrap_or_else(|| r#"{"Version":"2012-10-17","Statement":[]}"#.into());
    caller.check(
        world,
        &caller.action,
        &arn,
        &[],
        Some(Guard {
            document: &policy,
            owner: &account,
            kind: ResourcePolicyKind::Ordinary,
        }),
    )?;
    Ok((account, region, name))
}

impl Cloud for Sim {
    // ---- STS ------------------------------------------------------------------------------

    fn caller_identity(&self, who: &Credentials) -> Result<CallerIdentity> {
        self.call("sts:GetCallerIdentity", who, |c, w| {
            Ok(CallerIdentity {
                account: c.account().clone(),
                arn: c.arn(w),
            })
        })
    }

    fn assume_role(
        &self,
        who: &Credentials,
        role: &RoleArn,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials> {
        self.call("sts:AssumeRole", who, |c, w| {
            let valid = (2..=64).contains(&session_name.len())
                && session_name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_+=,.@-".contains(ch));
            if !valid {
                return Err(CloudError::invalid(&c.action, "ValidationError", format!("RoleSessionName '{session_name}' must be 2 to 64 of [\\w+=,.@-]")));
            }
            let name = role.name().to_owned();
            let trust = w
                .accounts
                .get(role.account())
                .and_then(|a| a.roles.get(&name))
                .filter(|_| role_arn(w, role.account(), &name) == role.as_str())
                .map(|r| r.trust.clone())
                .ok_or_else(|| {
                    CloudError::denied(&c.action, format!("User: {} is not authorized to perform: sts:AssumeRole on resource: {role} (no such role)", c.arn(w)))
                })?;
            let context: Vec<(&str, String)> = external_id.map(|e| ("sts:ExternalId", e.to_owned())).into_iter().collect();
            c.check(
                w,
                "sts:AssumeRole",
                role.as_str(),
                &context,
                Some(Guard {
                    document: &trust,
                    owner: role.account(),
                    kind: ResourcePolicyKind::TrustPolicy,
                }),
            )?;
            Ok(crate::admin::issue(
                w,
                Identity::Role {
                    account: role.account().clone(),
                    name,
                    session: session_name.to_owned(),
                },
            ))
        })
    }

    // ---- EC2 ------------------------------------------------------------------------------

    fn describe_instances(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceInfo>> {
        self.call("ec2:DescribeInstances", who, |c, w| {
            c.check(w, &c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    let i = own_instance(w, c, region, id)?;
                    Ok(instance_info(c.account(), region, id, i))
                })
                .collect()
        })
    }

    fn describe_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[VolumeId],
    ) -> Result<Vec<VolumeInfo>> {
        self.call("ec2:DescribeVolumes", who, |c, w| {
            c.check(w, &c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    let v = own_volume(w, c, region, id)?;
                    Ok(volume_info(c.account(), region, id, v))
                })
                .collect()
        })
    }

    fn describe_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[SnapshotId],
    ) -> Result<Vec<SnapshotInfo>> {
        self.call("ec2:DescribeSnapshots", who, |c, w| {
            c.check(w, &c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    let (owner, s) = visible_snapshot(w, c, region, id)?;
                    Ok(snapshot_info(&owner, region, id, &s))
                })
                .collect()
        })
    }

    fn create_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>> {
        self.call("ec2:CreateSnapshots", who, |c, w| {
            let account = c.account().clone();
            let volumes = own_instance(w, c, region, instance)?.volumes.clone();
            c.check(
                w,
                &c.action,
                &instance_arn(&account, region, instance.as_str()),
                &[],
                None,
            )?;
            for (v, _) in &volumes {
                c.check(w, &c.action, &volume_arn(&account, region, v.as_str()), &[], None)?;
            }
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, &c.action, &any_snapshot, &[], None)?;
            check_tags(w, c, tags, &any_snapshot)?;
            let mut out = Vec::new();
            for (v, _) in volumes {
                let id: SnapshotId = parse_id(&c.action, "InternalError", &new_id(w, "snap"))?;
                let r = region_mut(w, &account, region);
                let Some(volume) = r.volumes.get(&v) else { continue };
                let snapshot = Snapshot {
                    volume: v.clone(),
                    size_gib: volume.size_gib,
                    key: volume.key.clone(),
                    shared_with: Vec::new(),
                    state: "completed".into(),
                    tags: tags.to_vec(),
                    lineage: volume.lineage,
                    blocks: volume.blocks.clone(),
                    written: Default::default(),
                };
                out.push(snapshot_info(&account, region, &id, &snapshot));
                r.snapshots.insert(id, snapshot);
            }
            Ok(out)
        })
    }

    fn create_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        tags: &[Tag],
    ) -> Result<SnapshotInfo> {
        self.call("ec2:CreateSnapshot", who, |c, w| {
            let account = c.account().clone();
            let v = own_volume(w, c, region, volume)?.clone();
            c.check(
                w,
                &c.action,
                &volume_arn(&account, region, volume.as_str()),
                &[],
                None,
            )?;
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, &c.action, &any_snapshot, &[], None)?;
            check_tags(w, c, tags, &any_snapshot)?;
            let id: SnapshotId = parse_id(&c.action, "InternalError", &new_id(w, "snap"))?;
            let snapshot = Snapshot {
                volume: volume.clone(),
                size_gib: v.size_gib,
                key: v.key.clone(),
                shared_with: Vec::new(),
                state: "completed".into(),
                tags: tags.to_vec(),
                lineage: v.lineage,
                blocks: v.blocks.clone(),
                written: Default::default(),
            };
            let info = snapshot_info(&account, region, &id, &snapshot);
            region_mut(w, &account, region).snapshots.insert(id, snapshot);
            Ok(info)
        })
    }

    fn copy_snapshot(&self, who: &Credentials, region: &Region, copy: &CopySnapshot) -> Result<SnapshotId> {
        self.call("ec2:CopySnapshot", who, |c, w| {
            let account = c.account().clone();
            let (owner, source) = visible_snapshot(w, c, &copy.source_region, &copy.source)?;
            c.check(
                w,
                &c.action,
                &snapshot_arn(&copy.source_region, &copy.source),
                &[],
                None,
            )?;
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, &c.action, &any_snapshot, &[], None)?;
            check_tags(w, c, &copy.tags, &any_snapshot)?;
            if source.state != "completed" {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("snapshot {} is {}", copy.source, source.state),
                ));
            }
            if copy.kms_key_id.is_some() && !copy.encrypted {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterDependency",
                    "KmsKeyId requires Encrypted=true",
                ));
            }
            let by_default = region_mut(w, &account, region).encryption_by_default;
            // The copy's key: the one asked for; else the source's own key for a copy of one's
            // own snapshot within its region; else the caller's default key of the destination.
            let target = match (&copy.kms_key_id, &source.key) {
                (Some(k), _) => Some(resolve_key_arn(w, c, region, k)?),
                (None, Some(k)) if owner == account && &copy.source_region == region => Some(k.clone()),
                (None, Some(_)) => Some(default_key_arn(w, &account, region)),
                (None, None) if copy.encrypted || by_default => Some(default_key_arn(w, &account, region)),
                (None, None) => None,
            };
            if let Some(k) = &source.key {
                ebs_may_use_arn(w, c, k)?;
            }
            if let Some(k) = target.as_ref().filter(|t| Some(*t) != source.key.as_ref()) {
                ebs_may_use_arn(w, c, k)?;
            }
            // Changing the key or the region makes a full copy: a new lineage.
            let lineage = if target == source.key && &copy.source_region == region && owner == account {
                source.lineage
            } else {
                w.next_id += 1;
                w.next_id
            };
            let id: SnapshotId = parse_id(&c.action, "InternalError", &new_id(w, "snap"))?;
            region_mut(w, &account, region).snapshots.insert(
                id.clone(),
                Snapshot {
                    volume: parse_id(&c.action, "InternalError", "vol-ffffffff")?,
                    size_gib: source.size_gib,
                    key: target,
                    shared_with: Vec::new(),
                    state: "completed".into(),
                    tags: copy.tags.clone(),
                    lineage,
                    blocks: source.blocks.clone(),
                    written: Default::default(),
                },
            );
            Ok(id)
        })
    }

    fn modify_snapshot_sharing(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        add: &[AccountId],
        remove: &[AccountId],
    ) -> Result<()> {
        self.call("ec2:ModifySnapshotAttribute", who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, snapshot), &[], None)?;
            if add.len() + remove.len() > 500 {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterValue",
                    "at most 500 accounts per call",
                ));
            }
            let key = own_snapshot(w, c, region, snapshot)?.key.clone();
            if !add.is_empty() {
                if let Some((owner, r, id)) = key.as_deref().and_then(key_parts) {
                    let managed = crate::rules::key(w, &owner, &r, &id).is_some_and(|k| k.aws_managed);
                    if managed {
                        return Err(CloudError::new(
                            &c.action,
                            ErrorKind::NotPermitted,
                            "OperationNotPermitted",
                            "Encrypted snapshots with EBS default key cannot be shared",
                        ));
                    }
                }
            }
            let s = own_snapshot(w, c, region, snapshot)?;
            for a in add {
                if !s.shared_with.contains(a) {
                    s.shared_with.push(a.clone());
                }
            }
            s.shared_with.retain(|a| !remove.contains(a));
            Ok(())
        })
    }

    fn delete_snapshot(&self, who: &Credentials, region: &Region, snapshot: &SnapshotId) -> Result<()> {
        self.call("ec2:DeleteSnapshot", who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, snapshot), &[], None)?;
            own_snapshot(w, c, region, snapshot)?;
            region_mut(w, c.account(), region).snapshots.remove(snapshot);
            Ok(())
        })
    }

    fn create_volume(&self, who: &Credentials, region: &Region, volume: &CreateVolume) -> Result<VolumeInfo> {
        self.call("ec2:CreateVolume", who, |c, w| {
            let account = c.account().clone();
            let any_volume = volume_arn(&account, region, "*");
            c.check(w, &c.action, &any_volume, &[], None)?;
            check_tags(w, c, &volume.tags, &any_volume)?;
            if volume.kms_key_id.is_some() && !volume.encrypted {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterDependency",
                    "KmsKeyId requires Encrypted=true",
                ));
            }
            let source = match &volume.snapshot {
                Some(id) => {
                    c.check(w, &c.action, &snapshot_arn(region, id), &[], None)?;
                    let (owner, s) = visible_snapshot(w, c, region, id)?;
                    if s.state != "completed" {
                        return Err(CloudError::new(
                            &c.action,
                            ErrorKind::NotPermitted,
                            "IncorrectState",
                            format!("snapshot {id} is {}", s.state),
                        ));
                    }
                    Some((owner, s))
                }
                None => None,
            };
            let by_default = region_mut(w, &account, region).encryption_by_default;
            // A volume of an encrypted snapshot is always encrypted: with the key asked for,
            // else the snapshot's key if the caller owns it, else the caller's default key.
            let key = match (
                &volume.kms_key_id,
                source.as_ref().and_then(|(o, s)| s.key.clone().map(|k| (o, k))),
            ) {
                (Some(k), _) => Some(resolve_key_arn(w, c, region, k)?),
                (None, Some((owner, k))) if owner == &account => Some(k),
                (None, Some(_)) => Some(default_key_arn(w, &account, region)),
                (None, None) if volume.encrypted || by_default => Some(default_key_arn(w, &account, region)),
                (None, None) => None,
            };
            let source_key = source.as_ref().and_then(|(_, s)| s.key.clone());
            if let Some(k) = &source_key {
                ebs_may_use_arn(w, c, k)?;
            }
            if let Some(k) = key.as_ref().filter(|k| Some(*k) != source_key.as_ref()) {
                ebs_may_use_arn(w, c, k)?;
            }
            let min = source.as_ref().map_or(1, |(_, s)| s.size_gib);
            let size = volume
                .size_gib
                .or(source.as_ref().map(|(_, s)| s.size_gib))
                .ok_or_else(|| {
                    CloudError::invalid(
                        &c.action,
                        "MissingParameter",
                        "a volume needs a Size or a SnapshotId",
                    )
                })?;
            if size < min || size > bulwark_model::MAX_VOLUME_GIB {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterValue",
                    format!(
                        "size {size} GiB must be between {min} and {} GiB",
                        bulwark_model::MAX_VOLUME_GIB
                    ),
                ));
            }
            let lineage = match &source {
                Some((_, s)) => s.lineage,
                None => {
                    w.next_id += 1;
                    w.next_id
                }
            };
            let id: VolumeId = parse_id(&c.action, "InternalError", &new_id(w, "vol"))?;
            let v = Volume {
                size_gib: size,
                snapshot: volume.snapshot.clone(),
                key,
                attachment: None,
                tags: volume.tags.clone(),
                lineage,
                blocks: source.map(|(_, s)| s.blocks).unwrap_or_default(),
                zone: zone_in(&c.action, region, volume.availability_zone.as_deref())?,
            };
            let info = volume_info(&account, region, &id, &v);
            region_mut(w, &account, region).volumes.insert(id, v);
            Ok(info)
        })
    }

    fn delete_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        self.call("ec2:DeleteVolume", who, |c, w| {
            c.check(
                w,
                &c.action,
                &volume_arn(c.account(), region, volume.as_str()),
                &[],
                None,
            )?;
            if let Some((i, _)) = &own_volume(w, c, region, volume)?.attachment {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "VolumeInUse",
                    format!("Volume {volume} is currently attached to {i}"),
                ));
            }
            region_mut(w, c.account(), region).volumes.remove(volume);
            Ok(())
        })
    }

    fn attach_volume(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        instance: &InstanceId,
        device: &str,
    ) -> Result<()> {
        self.call("ec2:AttachVolume", who, |c, w| {
            let account = c.account().clone();
            c.check(
                w,
                &c.action,
                &instance_arn(&account, region, instance.as_str()),
                &[],
                None,
            )?;
            c.check(
                w,
                &c.action,
                &volume_arn(&account, region, volume.as_str()),
                &[],
                None,
            )?;
            let i = own_instance(w, c, region, instance)?.clone();
            let v = own_volume(w, c, region, volume)?.clone();
            if let Some((other, _)) = &v.attachment {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "VolumeInUse",
                    format!("{volume} is already attached to {other}"),
                ));
            }
            if i.state != "running" && i.state != "stopped" {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("instance {instance} is {}", i.state),
                ));
            }
            if zone_of(region, &v.zone) != zone_of(region, &i.zone) {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidVolume.ZoneMismatch",
                    format!(
                        "The volume '{volume}' is not in the same availability zone as instance '{instance}'"
                    ),
                ));
            }
            if i.volumes.iter().any(|(_, d)| d == device) {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterValue",
                    format!("device {device} is already in use on {instance}"),
                ));
            }
            // EBS creates a grant on the volume's key for the instance: the caller needs
            // kms:CreateGrant (and the other EBS key permissions) on it.
            let mut grant = None;
            if let Some(k) = &v.key {
                ebs_may_use_arn(w, c, k)?;
                grant = key_parts(k);
            }
            let grant_id = new_id(w, "grant");
            if let Some((owner, r, id)) = grant {
                if let Some(key) = region_mut(w, &owner, &r).keys.get_mut(&id) {
                    key.grants.push(GrantState {
                        id: grant_id,
                        grantee: format!("ec2.{region}.amazonaws.com/{instance}"),
                        operations: vec!["Decrypt".into()],
                        for_volume: Some(volume.clone()),
                    });
                }
            }
            own_volume(w, c, region, volume)?.attachment = Some((instance.clone(), device.to_owned()));
            own_instance(w, c, region, instance)?
                .volumes
                .push((volume.clone(), device.to_owned()));
            Ok(())
        })
    }

    fn detach_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        self.call("ec2:DetachVolume", who, |c, w| {
            let account = c.account().clone();
            c.check(
                w,
                &c.action,
                &volume_arn(&account, region, volume.as_str()),
                &[],
                None,
            )?;
            let v = own_volume(w, c, region, volume)?.clone();
            let Some((instance, _)) = v.attachment else {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("Volume '{volume}' is in the 'available' state."),
                ));
            };
            c.check(
                w,
                &c.action,
                &instance_arn(&account, region, instance.as_str()),
                &[],
                None,
            )?;
            own_volume(w, c, region, volume)?.attachment = None;
            if let Ok(i) = own_instance(w, c, region, &instance) {
                i.volumes.retain(|(v, _)| v != volume);
            }
            retire_grants(w, volume);
            Ok(())
        })
    }

    fn run_instance(&self, who: &Credentials, region: &Region, run: &RunInstance) -> Result<InstanceInfo> {
        let (info, dies) = self.call("ec2:RunInstances", who, |c, w| {
            let account = c.account().clone();
            let any_instance = instance_arn(&account, region, "*");
            c.check(w, &c.action, &any_instance, &[], None)?;
            check_tags(w, c, &run.tags, &any_instance)?;
            if let Some(arn) = &run.instance_profile {
                let invalid = || {
                    CloudError::invalid(
                        &c.action,
                        "InvalidParameterValue",
                        format!("Value ({arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN"),
                    )
                };
                let name = arn.rsplit('/').next().unwrap_or_default().to_owned();
                let a = w.accounts.entry(account.clone()).or_default();
                let profile = a.profiles.get_mut(&name).filter(|p| profile_arn(&account, &p.path, &p.name) == *arn).ok_or_else(invalid)?;
                // IAM is eventually consistent: a fresh profile is not yet visible to EC2.
                if profile.unseen_launches > 0 {
                    profile.unseen_launches -= 1;
                    let err = invalid();
                    self.save(w, &c.action)?;
                    return Err(err);
                }
                let role = profile.role.clone().ok_or_else(invalid)?;
                c.check(w, "iam:PassRole", &role_arn(w, &account, &role), &[("iam:PassedToService", "ec2.amazonaws.com".into())], None)?;
            }
            // Faults that shape the next instance launched.
            let dies = take_fault(w, |f| match f {
                Fault::WorkerDies { after_bytes } => Some(*after_bytes),
                _ => None,
            });
            let pace = take_fault(w, |f| match f {
                Fault::SlowWorker { bytes_per_second } => Some(*bytes_per_second),
                _ => None,
            });
            // The embedded cloud has no VPCs: a well-formed subnet is in the region's first
            // zone, like every volume made without a zone.
            if let Some(bad) = run
                .subnet
                .iter()
                .filter(|s| !s.starts_with("subnet-"))
                .chain(run.security_groups.iter().filter(|g| !g.starts_with("sg-")))
                .next()
            {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterValue",
                    format!("'{bad}' is not a subnet or security group id"),
                ));
            }
            let zone = match &run.subnet {
                Some(_) => zone_of(region, ""),
                None => zone_in(&c.action, region, run.availability_zone.as_deref())?,
            };
            let id: InstanceId = parse_id(&c.action, "InternalError", &new_id(w, "i"))?;
            let instance = Instance {
                state: "running".into(),
                state_reason: None,
                profile: run.instance_profile.clone(),
                volumes: Vec::new(),
                tags: run.tags.clone(),
                user_data: run.user_data.clone(),
                zone,
                subnet: run.subnet.clone(),
                security_groups: run.security_groups.clone(),
                instance_type: run.instance_type.clone(),
            };
            let info = instance_info(&account, region, &id, &instance);
            region_mut(w, &account, region).instances.insert(id, instance);
            Ok((info, (dies, pace)))
        })?;
        let (dies, pace) = dies;
        let machine = Arc::new(Machine::new(
            info.id.clone(),
            info.owner.clone(),
            region.clone(),
            dies,
            pace,
        ));
        boot(self, machine, run.user_data.clone());
        Ok(info)
    }

    fn terminate_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()> {
        self.call("ec2:TerminateInstances", who, |c, w| {
            c.check(
                w,
                &c.action,
                &instance_arn(c.account(), region, instance.as_str()),
                &[],
                None,
            )?;
            let i = own_instance(w, c, region, instance)?;
            i.state = "terminated".into();
            // Volumes attached after launch survive termination (DeleteOnTermination is off).
            let volumes: Vec<VolumeId> = i.volumes.drain(..).map(|(v, _)| v).collect();
            for v in volumes {
                if let Ok(v) = own_volume(w, c, region, &v) {
                    v.attachment = None;
                }
                retire_grants(w, &v);
            }
            if let Some(m) = lock(&self.inner.machines).get(instance) {
                m.stop();
            }
            Ok(())
        })
    }

    fn ebs_default_key(&self, who: &Credentials, region: &Region) -> Result<String> {
        self.call("ec2:GetEbsDefaultKmsKeyId", who, |c, w| {
            c.check(w, &c.action, "*", &[], None)?;
            let account = c.account().clone();
            Ok(default_key_arn(w, &account, region))
        })
    }

    fn ebs_encryption_by_default(&self, who: &Credentials, region: &Region) -> Result<bool> {
        self.call("ec2:GetEbsEncryptionByDefault", who, |c, w| {
            c.check(w, &c.action, "*", &[], None)?;
            Ok(region_mut(w, &c.account().clone(), region).encryption_by_default)
        })
    }

    // ---- EBS direct APIs --------------------------------------------------------------------

    fn list_snapshot_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage> {
        self.call("ebs:ListSnapshotBlocks", who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let (_, s) = readable_snapshot(w, c, region, snapshot)?;
            let indexes: Vec<u64> = s.blocks.keys().copied().collect();
            page(&c.action, snapshot, &indexes, s.size_gib, next_token)
        })
    }

    fn list_changed_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        first: &SnapshotId,
        second: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage> {
        self.call("ebs:ListChangedBlocks", who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, first), &[], None)?;
            c.check(w, &c.action, &snapshot_arn(region, second), &[], None)?;
            let (_, a) = readable_snapshot(w, c, region, first)?;
            let (_, b) = readable_snapshot(w, c, region, second)?;
            if a.lineage != b.lineage {
                return Err(validation(
                    &c.action,
                    "UNRELATED_SNAPSHOTS",
                    format!("{first} and {second} are not of the same lineage"),
                ));
            }
            let mut indexes: Vec<u64> = b
                .blocks
                .iter()
                .filter(|(i, h)| a.blocks.get(i) != Some(h))
                .map(|(i, _)| *i)
                .collect();
            indexes.extend(a.blocks.keys().filter(|i| !b.blocks.contains_key(i)));
            indexes.sort_unstable();
            page(&c.action, second, &indexes, b.size_gib, next_token)
        })
    }

    fn get_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        block: &BlockRef,
    ) -> Result<(Vec<u8>, String)> {
        let hash = self.call("ebs:GetSnapshotBlock", who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let (_, s) = readable_snapshot(w, c, region, snapshot)?;
            if block.token != block_token(snapshot, block.index) {
                return Err(validation(
                    &c.action,
                    "INVALID_BLOCK_TOKEN",
                    "the block token is not one a listing of this snapshot returned",
                ));
            }
            if let Some(k) = &s.key {
                direct_key_use(w, c, k, &["kms:Decrypt"])?;
            }
            Ok(s.blocks.get(&block.index).copied())
        })?;
        let mut data = vec![0u8; EBS_BLOCK_SIZE as usize];
        self.inner.store.read(hash.as_ref(), &mut data).map_err(|e| {
            CloudError::new(
                "ebs:GetSnapshotBlock",
                ErrorKind::Unavailable,
                "InternalServerException",
                e.to_string(),
            )
        })?;
        let checksum = block_checksum(&data);
        Ok((data, checksum))
    }

    fn start_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        start: &StartSnapshot,
    ) -> Result<SnapshotId> {
        self.call("ebs:StartSnapshot", who, |c, w| {
            let account = c.account().clone();
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, &c.action, &any_snapshot, &[], None)?;
            let a = &c.action;
            if start.volume_size_gib == 0 || start.volume_size_gib > bulwark_model::MAX_VOLUME_GIB {
                return Err(validation(
                    a,
                    "INVALID_VOLUME_SIZE",
                    "the volume size must be 1 to 65536 GiB",
                ));
            }
            if let Some(k) = &start.kms_key_arn {
                if !k.starts_with("arn:aws:kms:") || !k.contains(":key/") {
                    return Err(validation(
                        a,
                        "INVALID_CUSTOMER_KEY",
                        format!("KmsKeyArn must be a key ARN, not {k}"),
                    ));
                }
            }
            let parent = match &start.parent {
                Some(p) => Some(readable_snapshot(w, c, region, p)?.1),
                None => None,
            };
            let by_default = region_mut(w, &account, region).encryption_by_default;
            let key = match (&parent, &start.kms_key_arn) {
                (Some(_), _) if start.encrypted => {
                    return Err(validation(
                        a,
                        "INVALID_PARAMETER_VALUE",
                        "Encrypted cannot be given with ParentSnapshotId",
                    ))
                }
                (Some(p), Some(_)) if p.key.is_some() => {
                    return Err(validation(
                        a,
                        "INVALID_PARAMETER_VALUE",
                        "an encrypted parent keeps its key: KmsKeyArn cannot be given",
                    ))
                }
                (Some(p), None) if p.key.is_none() && by_default => {
                    return Err(validation(
                        a,
                        "INVALID_PARAMETER_VALUE",
                        "encryption by default is on: the parent snapshot must be encrypted",
                    ))
                }
                (Some(p), None) => p.key.clone(),
                // The EBS direct APIs answer a key they cannot find with their own code.
                (_, Some(k)) => Some(
                    resolve_key_arn(w, c, region, k)
                        .map_err(|e| validation(a, "INVALID_CUSTOMER_KEY", e.message))?,
                ),
                (None, None) if start.encrypted || by_default => Some(default_key_arn(w, &account, region)),
                (None, None) => None,
            };
            if let Some(k) = &key {
                direct_key_use(
                    w,
                    c,
                    k,
                    &[
                        "kms:GenerateDataKeyWithoutPlaintext",
                        "kms:GenerateDataKey",
                        "kms:Encrypt",
                        "kms:Decrypt",
                        "kms:DescribeKey",
                        "kms:CreateGrant",
                    ],
                )?;
            }
            let pending = w.accounts.get(&account).map_or(0, |a| {
                a.regions
                    .values()
                    .flat_map(|r| r.snapshots.values())
                    .filter(|s| s.state == "pending")
                    .count()
            });
            if pending >= 100 {
                return Err(CloudError::new(
                    a,
                    ErrorKind::Throttled,
                    "ServiceQuotaExceededException",
                    "100 pending snapshots per account",
                ));
            }
            let lineage = match &parent {
                Some(p) => p.lineage,
                None => {
                    w.next_id += 1;
                    w.next_id
                }
            };
            let id: SnapshotId = parse_id(a, "InternalError", &new_id(w, "snap"))?;
            region_mut(w, &account, region).snapshots.insert(
                id.clone(),
                Snapshot {
                    volume: parse_id(a, "InternalError", "vol-ffffffff")?,
                    size_gib: start.volume_size_gib,
                    key,
                    shared_with: Vec::new(),
                    state: "pending".into(),
                    tags: start.tags.clone(),
                    lineage,
                    blocks: parent.map(|p| p.blocks).unwrap_or_default(),
                    written: Default::default(),
                },
            );
            Ok(id)
        })
    }

    fn put_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        index: u64,
        data: &[u8],
        checksum: &str,
    ) -> Result<()> {
        let action = "ebs:PutSnapshotBlock";
        if data.len() as u64 != EBS_BLOCK_SIZE {
            return Err(validation(
                action,
                "INVALID_BLOCK",
                format!("a block has {EBS_BLOCK_SIZE} bytes, not {}", data.len()),
            ));
        }
        if block_checksum(data) != checksum {
            return Err(validation(
                action,
                "INVALID_CHECKSUM",
                "the checksum does not match the data",
            ));
        }
        let hash = self.inner.store.put(data).map_err(|e| {
            CloudError::new(
                action,
                ErrorKind::Unavailable,
                "InternalServerException",
                e.to_string(),
            )
        })?;
        self.call(action, who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let s = own_snapshot(w, c, region, snapshot)?;
            if s.state != "pending" {
                return Err(validation(
                    &c.action,
                    "INVALID_SNAPSHOT_STATE",
                    format!("snapshot {snapshot} is {}", s.state),
                ));
            }
            if index >= (u64::from(s.size_gib) << 30) / EBS_BLOCK_SIZE {
                return Err(validation(
                    &c.action,
                    "INVALID_BLOCK_INDEX",
                    format!("block {index} is past the end of the volume"),
                ));
            }
            match hash {
                Some(h) => s.blocks.insert(index, h),
                None => s.blocks.remove(&index),
            };
            s.written.insert(index, checksum.to_owned());
            Ok(())
        })
    }

    fn complete_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        changed_blocks: u64,
        checksum: &str,
    ) -> Result<()> {
        self.call("ebs:CompleteSnapshot", who, |c, w| {
            c.check(w, &c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let s = own_snapshot(w, c, region, snapshot)?;
            if s.state != "pending" {
                return Err(validation(
                    &c.action,
                    "INVALID_SNAPSHOT_STATE",
                    format!("snapshot {snapshot} is {}", s.state),
                ));
            }
            if s.written.len() as u64 != changed_blocks {
                return Err(validation(
                    &c.action,
                    "INVALID_PARAMETER_VALUE",
                    format!(
                        "{changed_blocks} changed blocks declared, {} written",
                        s.written.len()
                    ),
                ));
            }
            let mut all = Vec::new();
            for sum in s.written.values() {
                all.push(decode(sum).unwrap_or_default());
            }
            if linear_checksum(all.iter().map(Vec::as_slice)) != checksum {
                return Err(validation(
                    &c.action,
                    "INVALID_CHECKSUM",
                    "the linear checksum does not match the blocks written",
                ));
            }
            s.written.clear();
            s.state = "completed".into();
            Ok(())
        })
    }

    // ---- KMS --------------------------------------------------------------------------------

    fn describe_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<KeyInfo> {
        self.call("kms:DescribeKey", who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, "kms:DescribeKey", false)?;
            Ok(KeyInfo {
                arn: key_arn(&owner, region, &k.id),
                account: owner,
                manager: if k.aws_managed {
                    KeyManager::Aws
                } else {
                    KeyManager::Customer
                },
                state: k.state,
                spec: k.spec,
            })
        })
    }

    fn get_key_policy(&self, who: &Credentials, region: &Region, key: &str) -> Result<String> {
        self.call("kms:GetKeyPolicy", who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, "kms:GetKeyPolicy", false)?;
            Ok(k.policy)
        })
    }

    fn list_grants(&self, who: &Credentials, region: &Region, key: &str) -> Result<Vec<Grant>> {
        self.call("kms:ListGrants", who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, "kms:ListGrants", false)?;
            Ok(k.grants
                .iter()
                .map(|g| Grant {
                    id: g.id.clone(),
                    grantee: g.grantee.clone(),
                    operations: g.operations.clone(),
                })
                .collect())
        })
    }

    fn generate_data_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        self.call("kms:GenerateDataKey", who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, "kms:GenerateDataKey", false)?;
            usable(c, &k)?;
            let plaintext = crate::admin::random_bytes::<32>().to_vec();
            let arn = key_arn(&owner, region, &k.id);
            let sealed = seal(&c.action, &k.material, &arn, &plaintext)?;
            let mut ciphertext = arn.into_bytes();
            ciphertext.push(b'\n');
            ciphertext.extend(sealed);
            Ok((plaintext, ciphertext))
        })
    }

    fn decrypt(&self, who: &Credentials, region: &Region, ciphertext: &[u8]) -> Result<Vec<u8>> {
        self.call("kms:Decrypt", who, |c, w| {
            let invalid = || {
                CloudError::invalid(
                    &c.action,
                    "InvalidCiphertextException",
                    "the ciphertext is not one KMS made",
                )
            };
            let split = ciphertext.iter().position(|&b| b == b'\n').ok_or_else(invalid)?;
            let arn = std::str::from_utf8(&ciphertext[..split]).map_err(|_| invalid())?;
            let (owner, r, id) = key_parts(arn).ok_or_else(invalid)?;
            if &r != region {
                return Err(invalid());
            }
            let k = crate::rules::key(w, &owner, region, &id)
                .cloned()
                .ok_or_else(invalid)?;
            c.check_key(w, &owner, region, &k, "kms:Decrypt", false)?;
            usable(c, &k)?;
            open(&k.material, arn, &ciphertext[split + 1..]).ok_or_else(invalid)
        })
    }

    // ---- IAM --------------------------------------------------------------------------------

    fn get_role(&self, who: &Credentials, role: &RoleArn) -> Result<RoleInfo> {
        self.call("iam:GetRole", who, |c, w| {
            c.check(w, &c.action, role.as_str(), &[], None)?;
            let r = own_role(w, c, role)?;
            Ok(RoleInfo {
                arn: role.to_string(),
                trust_policy: r.trust.clone(),
                inline_policies: r.policies.iter().map(|(n, d)| (n.clone(), d.clone())).collect(),
            })
        })
    }

    fn create_role(
        &self,
        who: &Credentials,
        path: &str,
        name: &str,
        trust_policy: &str,
        tags: &[Tag],
    ) -> Result<RoleArn> {
        self.call("iam:CreateRole", who, |c, w| {
            let account = c.account().clone();
            check_path(&c.action, path)?;
            let arn = format!("arn:aws:iam::{account}:role{path}{name}");
            c.check(w, &c.action, &arn, &[], None)?;
            bulwark_cloud::policy::PolicyDocument::parse(trust_policy)
                .map_err(|e| CloudError::invalid(&c.action, "MalformedPolicyDocument", e.to_string()))?;
            let a = w.accounts.entry(account).or_default();
            if a.roles.contains_key(name) {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "EntityAlreadyExists",
                    format!("Role with name {name} already exists."),
                ));
            }
            a.roles.insert(
                name.to_owned(),
                Role {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    trust: trust_policy.to_owned(),
                    policies: Default::default(),
                    tags: tags.to_vec(),
                },
            );
            parse_id(&c.action, "InternalError", &arn)
        })
    }

    fn delete_role(&self, who: &Credentials, role: &RoleArn) -> Result<()> {
        self.call("iam:DeleteRole", who, |c, w| {
            c.check(w, &c.action, role.as_str(), &[], None)?;
            let r = own_role(w, c, role)?;
            if !r.policies.is_empty() {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "DeleteConflict",
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            let a = w.accounts.entry(c.account().clone()).or_default();
            if a.profiles
                .values()
                .any(|p| p.role.as_deref() == Some(role.name()))
            {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "DeleteConflict",
                    "Cannot delete entity, must remove roles from instance profile first.",
                ));
            }
            a.roles.remove(role.name());
            Ok(())
        })
    }

    fn put_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str, document: &str) -> Result<()> {
        self.call("iam:PutRolePolicy", who, |c, w| {
            c.check(w, &c.action, role.as_str(), &[], None)?;
            bulwark_cloud::policy::PolicyDocument::parse(document)
                .map_err(|e| CloudError::invalid(&c.action, "MalformedPolicyDocument", e.to_string()))?;
            own_role(w, c, role)?;
            if let Some(r) = w
                .accounts
                .entry(c.account().clone())
                .or_default()
                .roles
                .get_mut(role.name())
            {
                r.policies.insert(name.to_owned(), document.to_owned());
            }
            Ok(())
        })
    }

    fn delete_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str) -> Result<()> {
        self.call("iam:DeleteRolePolicy", who, |c, w| {
            c.check(w, &c.action, role.as_str(), &[], None)?;
            own_role(w, c, role)?;
            let r = w
                .accounts
                .entry(c.account().clone())
                .or_default()
                .roles
                .get_mut(role.name());
            match r.and_then(|r| r.policies.remove(name)) {
                Some(_) => Ok(()),
                None => Err(CloudError::not_found(
                    &c.action,
                    "NoSuchEntity",
                    format!("The role policy with name {name} cannot be found."),
                )),
            }
        })
    }

    fn create_instance_profile(&self, who: &Credentials, path: &str, name: &str) -> Result<String> {
        self.call("iam:CreateInstanceProfile", who, |c, w| {
            let account = c.account().clone();
            check_path(&c.action, path)?;
            let arn = profile_arn(&account, path, name);
            c.check(w, &c.action, &arn, &[], None)?;
            let a = w.accounts.entry(account).or_default();
            if a.profiles.contains_key(name) {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "EntityAlreadyExists",
                    format!("Instance Profile {name} already exists."),
                ));
            }
            a.profiles.insert(
                name.to_owned(),
                Profile {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    role: None,
                    unseen_launches: 1,
                },
            );
            Ok(arn)
        })
    }

    fn delete_instance_profile(&self, who: &Credentials, profile: &str) -> Result<()> {
        self.call("iam:DeleteInstanceProfile", who, |c, w| {
            c.check(w, &c.action, profile, &[], None)?;
            let name = own_profile(w, c, profile)?.name.clone();
            let a = w.accounts.entry(c.account().clone()).or_default();
            if a.profiles.get(&name).is_some_and(|p| p.role.is_some()) {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "DeleteConflict",
                    "Cannot delete entity, must remove roles from instance profile first.",
                ));
            }
            a.profiles.remove(&name);
            Ok(())
        })
    }

    fn add_role_to_instance_profile(&self, who: &Credentials, profile: &str, role: &RoleArn) -> Result<()> {
        self.call("iam:AddRoleToInstanceProfile", who, |c, w| {
            c.check(w, &c.action, profile, &[], None)?;
            own_role(w, c, role)?;
            let p = own_profile(w, c, profile)?;
            if p.role.is_some() {
                return Err(CloudError::new(
                    &c.action,
                    ErrorKind::Conflict,
                    "LimitExceeded",
                    "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1",
                ));
            }
            p.role = Some(role.name().to_owned());
            Ok(())
        })
    }

    fn remove_role_from_instance_profile(
        &self,
        who: &Credentials,
        profile: &str,
        role: &RoleArn,
    ) -> Result<()> {
        self.call("iam:RemoveRoleFromInstanceProfile", who, |c, w| {
            c.check(w, &c.action, profile, &[], None)?;
            let p = own_profile(w, c, profile)?;
            if p.role.as_deref() != Some(role.name()) {
                return Err(CloudError::not_found(
                    &c.action,
                    "NoSuchEntity",
                    format!("{role} is not in {profile}"),
                ));
            }
            p.role = None;
            Ok(())
        })
    }

    fn list_instance_profiles_for_role(&self, who: &Credentials, role: &RoleArn) -> Result<Vec<String>> {
        self.call("iam:ListInstanceProfilesForRole", who, |c, w| {
            c.check(w, &c.action, role.as_str(), &[], None)?;
            own_role(w, c, role)?;
            let a = w.accounts.entry(c.account().clone()).or_default();
            Ok(a.profiles
                .values()
                .filter(|p| p.role.as_deref() == Some(role.name()))
                .map(|p| profile_arn(c.account(), &p.path, &p.name))
                .collect())
        })
    }

    // ---- SQS --------------------------------------------------------------------------------

    fn create_queue(&self, who: &Credentials, region: &Region, name: &str) -> Result<String> {
        self.call("sqs:CreateQueue", who, |c, w| {
            let account = c.account().clone();
            if name.is_empty()
                || name.len() > 80
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterValue",
                    format!("queue name '{name}': 1 to 80 letters, digits, - and _"),
                ));
            }
            c.check(
                w,
                &c.action,
                &format!("arn:aws:sqs:{region}:{account}:{name}"),
                &[],
                None,
            )?;
            region_mut(w, &account, region)
                .queues
                .entry(name.to_owned())
                .or_default();
            Ok(format!("https://sqs.{region}.amazonaws.com/{account}/{name}"))
        })
    }

    fn set_queue_policy(&self, who: &Credentials, region: &Region, queue: &str, policy: &str) -> Result<()> {
        self.call("sqs:SetQueueAttributes", who, |c, w| {
            let (account, r, name) = check_queue(w, c, queue)?;
            if &r != region {
                return Err(no_queue(&c.action, queue));
            }
            bulwark_cloud::policy::PolicyDocument::parse(policy)
                .map_err(|e| CloudError::invalid(&c.action, "InvalidAttributeValue", e.to_string()))?;
            if let Some(q) = region_mut(w, &account, region).queues.get_mut(&name) {
                q.policy = Some(policy.to_owned());
            }
            Ok(())
        })
    }

    fn delete_queue(&self, who: &Credentials, region: &Region, queue: &str) -> Result<()> {
        self.call("sqs:DeleteQueue", who, |c, w| {
            let (account, _, name) = check_queue(w, c, queue)?;
            region_mut(w, &account, region).queues.remove(&name);
            lock(&self.inner.queues).remove(queue);
            Ok(())
        })
    }

    fn send_message(&self, who: &Credentials, region: &Region, queue: &str, body: &str) -> Result<()> {
        self.call("sqs:SendMessage", who, |c, w| {
            let (_, r, _) = check_queue(w, c, queue)?;
            if &r != region {
                return Err(no_queue(&c.action, queue));
            }
            if body.len() > 256 * 1024 {
                return Err(CloudError::invalid(
                    &c.action,
                    "InvalidParameterValue",
                    "a message is at most 256 KiB",
                ));
            }
            w.next_id += 1;
            lock(&self.inner.queues)
                .entry(queue.to_owned())
                .or_default()
                .push_back((w.next_id, body.to_owned()));
            self.inner.queue_signal.notify_all();
            Ok(())
        })
    }

    fn receive_messages(
        &self,
        who: &Credentials,
        region: &Region,
        queue: &str,
        wait: Duration,
    ) -> Result<Vec<Message>> {
        self.call("sqs:ReceiveMessage", who, |c, w| {
            let (_, r, _) = check_queue(w, c, queue)?;
            if &r != region {
                return Err(no_queue(&c.action, queue));
            }
            Ok(())
        })?;
        let deadline = Instant::now() + wait;
        let mut queues = lock(&self.inner.queues);
        loop {
            if let Some(q) = queues.get_mut(queue) {
                if !q.is_empty() {
                    // Received messages are handed out once: a session's queue has one reader.
                    return Ok(q
                        .drain(..q.len().min(10))
                        .map(|(id, body)| Message {
                            receipt: id.to_string(),
                            body,
                        })
                        .collect());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            queues = self
                .inner
                .queue_signal
                .wait_timeout(queues, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn delete_message(&self, who: &Credentials, region: &Region, queue: &str, receipt: &str) -> Result<()> {
        self.call("sqs:DeleteMessage", who, |c, w| {
            let (_, r, _) = check_queue(w, c, queue)?;
            if &r != region || receipt.is_empty() {
                return Err(CloudError::invalid(
                    &c.action,
                    "ReceiptHandleIsInvalid",
                    format!("receipt '{receipt}' is invalid"),
                ));
            }
            Ok(())
        })
    }

    // ---- S3 ---------------------------------------------------------------------------------

    fn object_store(
        &self,
        who: &SharedCredentials,
        region: &Region,
        bucket: &str,
        prefix: &str,
    ) -> Result<Box<dyn Backend>> {
        let _ = region;
        {
            let w = self.inner.world();
            Inner::identity(&w, "s3:ListBucket", &who.get())?;
            if !w.buckets.contains_key(bucket) {
                return Err(CloudError::not_found(
                    "s3:ListBucket",
                    "NoSuchBucket",
                    format!("The specified bucket {bucket} does not exist"),
                ));
            }
        }
        Ok(Box::new(crate::objects::ObjectStore::new(
            self.clone(),
            who.clone(),
            bucket,
            prefix,
        )))
    }
}

// ---- helpers of the calls above --------------------------------------------------------------

/// A snapshot the caller may read block by block: visible to it and completed.
fn readable_snapshot(
    world: &World,
    caller: &Caller,
    region: &Region,
    id: &SnapshotId,
) -> Result<(AccountId, Snapshot)> {
    let (owner, s) = visible_snapshot(world, caller, region, id)
        .map_err(|e| CloudError::not_found(&caller.action, "ResourceNotFoundException", e.message))?;
    if s.state != "completed" {
        return Err(validation(
            &caller.action,
            "INVALID_SNAPSHOT_STATE",
            format!("snapshot {id} is {}", s.state),
        ));
    }
    Ok((owner, s))
}

fn block_token(snapshot: &SnapshotId, index: u64) -> String {
    BASE64.encode(format!("{snapshot}:{index}"))
}

fn page(
    action: &str,
    snapshot: &SnapshotId,
    indexes: &[u64],
    size_gib: u32,
    next_token: Option<&str>,
) -> Result<BlockPage> {
    let start: usize = match next_token {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            validation(
                action,
                "INVALID_PAGINATION_TOKEN",
                "the token is not one a listing returned",
            )
        })?,
    };
    let end = (start + PAGE).min(indexes.len());
    Ok(BlockPage {
        blocks: indexes
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|&index| BlockRef {
                index,
                token: block_token(snapshot, index),
            })
            .collect(),
        volume_size_gib: size_gib,
        next_token: (end < indexes.len()).then(|| end.to_string()),
    })
}

/// The EBS direct APIs use the key of an encrypted snapshot with the caller's permissions.
fn direct_key_use(world: &World, caller: &Caller, arn: &str, actions: &[&str]) -> Result<()> {
    let (owner, region, id) = key_parts(arn).ok_or_else(|| {
        CloudError::invalid(
            &caller.action,
            "ValidationException",
            format!("{arn} is not a key ARN"),
        )
    })?;
    let key = crate::rules::key(world, &owner, &region, &id).ok_or_else(|| {
        validation(
            &caller.action,
            "INVALID_CUSTOMER_KEY",
            format!("key {arn} does not exist"),
        )
    })?;
    for action in actions {
        caller
            .check_key(world, &owner, &region, key, action, true)
            .map_err(|e| {
                CloudError::denied(&caller.action, format!("DEPENDENCY_ACCESS_DENIED: {}", e.message))
            })?;
    }
    Ok(())
}

fn retire_grants(world: &mut World, volume: &VolumeId) {
    for a in world.accounts.values_mut() {
        for r in a.regions.values_mut() {
            for k in r.keys.values_mut() {
                k.grants.retain(|g| g.for_volume.as_ref() != Some(volume));
            }
        }
    }
}

fn kms_key(
    world: &mut World,
    caller: &Caller,
    region: &Region,
    reference: &str,
) -> Result<(AccountId, crate::state::Key)> {
    let (owner, id) = resolve_key(world, &caller.action, caller.account(), region, reference)?;
    if reference.ends_with("alias/aws/ebs") {
        aws_ebs_key(world, &owner, region);
    }
    let key = crate::rules::key(world, &owner, region, &id)
        .cloned()
        .ok_or_else(|| {
            CloudError::not_found(
                &caller.action,
                "NotFoundException",
                format!("Key '{reference}' does not exist"),
            )
        })?;
    Ok((owner, key))
}

fn usable(caller: &Caller, key: &crate::state::Key) -> Result<()> {
    if key.state == "Enabled" {
        Ok(())
    } else {
        Err(CloudError::new(
            &caller.action,
            ErrorKind::NotPermitted,
            "KMSInvalidStateException",
            format!("key {} is {}", key.id, key.state),
        ))
    }
}

fn aead_key(material: &str) -> Option<aead::LessSafeKey> {
    let bytes = hex::decode(material).ok()?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes).ok()?;
    Some(aead::LessSafeKey::new(unbound))
}

fn seal(action: &str, material: &str, arn: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let fail = || {
        CloudError::new(
            action,
            ErrorKind::Unavailable,
            "KMSInternalException",
            "sealing failed",
        )
    };
    let key = aead_key(material).ok_or_else(fail)?;
    let nonce = crate::admin::random_bytes::<12>();
    let mut data = plaintext.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(arn.as_bytes()),
        &mut data,
    )
    .map_err(|_| fail())?;
    let mut out = nonce.to_vec();
    out.extend(data);
    Ok(out)
}

fn open(material: &str, arn: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let key = aead_key(material)?;
    let (nonce, data) = sealed.split_at_checked(12)?;
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::from(arn.as_bytes()), &mut data)
        .ok()?;
    Some(plain.to_vec())
}

fn own_role<'w>(world: &'w World, caller: &Caller, role: &RoleArn) -> Result<&'w Role> {
    let found = world
        .accounts
        .get(role.account())
        .and_then(|a| a.roles.get(role.name()))
        .filter(|_| role.account() == caller.account());
    found.ok_or_else(|| {
        CloudError::not_found(
            &caller.action,
            "NoSuchEntity",
            format!("The role with name {} cannot be found.", role.name()),
        )
    })
}

fn own_profile<'w>(world: &'w mut World, caller: &Caller, arn: &str) -> Result<&'w mut Profile> {
    let account = caller.account().clone();
    let name = arn.rsplit('/').next().unwrap_or_default().to_owned();
    let action = caller.action.clone();
    let a = world.accounts.entry(account.clone()).or_default();
    a.profiles
        .get_mut(&name)
        .filter(|p| profile_arn(&account, &p.path, &p.name) == arn)
        .ok_or_else(|| {
            CloudError::not_found(
                &action,
                "NoSuchEntity",
                format!("Instance Profile {arn} cannot be found."),
            )
        })
}

fn check_path(action: &str, path: &str) -> Result<()> {
    if path.starts_with('/') && path.ends_with('/') && path.len() <= 512 {
        Ok(())
    } else {
        Err(CloudError::invalid(
            action,
            "ValidationError",
            format!("path '{path}' must begin and end with /"),
        ))
    }
}
