//! The embedded cloud's answers to every call of the cloud traits, one module per service:
//! authorize, apply AWS's rules, change the world, save it. Each call checks everything before
//! it changes anything, so a refused call leaves the world as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bulwark_cloud::policy::ResourcePolicyKind;
use bulwark_cloud::{
    BlockPage, BlockRef, CallerIdentity, CloudError, CopySnapshot, CreateVolume, Credentials, Ebs, Ec2,
    ErrorKind, Grant, Iam, ImageInfo, InstanceInfo, KeyInfo, KeyManager, Kms, Message, ObjectStore,
    RegisterImage, Result, RoleInfo, RunInstance, SharedCredentials, SnapshotInfo, Sqs, StartSnapshot, Sts,
    Tag, VolumeInfo, EBS_BLOCK_SIZE,
};
use bulwark_model::{AccountId, Action, ImageId, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_storage::Backend;
use ring::aead;

use bulwark_cloud::checksum::{block_checksum, decode, linear_checksum};

use crate::auth::{key_arn, role_arn, Caller, Guard};
use crate::devices::{boot, Machine};
use crate::rules::{aws_ebs_key, default_key, ebs_may_use, new_id, region_mut, resolve_key};
use crate::state::{GrantState, Identity, Instance, Profile, RegionState, Role, Snapshot, Volume, World};
use crate::{lock, Fault, Inner, Sim};

mod ebs;
mod ec2;
mod iam;
mod images;
mod kms;
mod s3;
mod sqs;
mod sts;

/// Blocks per page of the EBS direct API listings (AWS's maximum `MaxResults`).
const PAGE: usize = 10_000;

impl Sim {
    /// Runs one call: resolves the caller, fires a pending fault, runs `f`, and saves the world
    /// if `f` may have changed it (or a fault was consumed).
    fn call<T>(
        &self,
        action: Action,
        who: &Credentials,
        f: impl FnOnce(&Caller, &mut World) -> Result<T>,
    ) -> Result<T> {
        let (out, lost) = self.call_effect(action, who, f)?;
        match lost {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// [`Sim::call`] for a call with effects outside the world (a launch boots a machine):
    /// answers what `f` made, and beside it the error the caller gets if the answer is lost
    /// (the effects happen all the same).
    fn call_effect<T>(
        &self,
        action: Action,
        who: &Credentials,
        f: impl FnOnce(&Caller, &mut World) -> Result<T>,
    ) -> Result<(T, Option<CloudError>)> {
        let unavailable = |e| crate::SimError::unavailable(action, e);
        let mut world = if saved_after(action) {
            self.inner.world()
        } else {
            self.inner.read()
        }
        .map_err(unavailable)?;
        crate::clock::settle(&mut world, crate::clock::now());
        let identity = Inner::identity(&world, action, who)?;
        if let Err(e) = Inner::fault(&mut world, action) {
            world.set_dirty(true);
            return Err(e);
        }
        let caller = Caller { identity, action };
        let out = f(&caller, &mut world)?;
        // The call took effect; its answer may still be lost on its way back.
        let lost = take_fault(&mut world, |f| {
            matches!(f, Fault::LoseResponse { action: a } if *a == action).then_some(())
        })
        .map(|()| {
            world.set_dirty(true);
            CloudError::new(
                action,
                ErrorKind::Unavailable,
                "RequestTimeout",
                "the request was made but its response was lost (injected fault)",
            )
        });
        Ok((out, lost))
    }
}

// ---- small helpers -------------------------------------------------------------------------

/// Whether `action` may change the world, which is then saved: not reads (Describe*, List*,
/// Get*), and not PutSnapshotBlock, whose writes wait apart (`persist::Unsaved`) for
/// CompleteSnapshot; an appliance that dies meanwhile leaves a pending snapshot, which its
/// cleanup deletes all the same.
fn saved_after(action: Action) -> bool {
    !(action.is_read() || action == Action::EbsPutSnapshotBlock)
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
        caller.action,
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
    let action = caller.action;
    region_mut(world, caller.account(), region)
        .snapshots
        .get_mut(id)
        .ok_or_else(|| {
            CloudError::not_found(
                action,
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
    let action = caller.action;
    region_mut(world, caller.account(), region)
        .volumes
        .get_mut(id)
        .ok_or_else(|| {
            CloudError::not_found(
                action,
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
    let action = caller.action;
    region_mut(world, caller.account(), region)
        .instances
        .get_mut(id)
        .ok_or_else(|| {
            CloudError::not_found(
                action,
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{id}' does not exist"),
            )
        })
}

/// The caller's instance `id`, once its policies allow the call's action on it.
fn instance_acted_on<'w>(
    world: &'w mut World,
    caller: &Caller,
    region: &Region,
    id: &InstanceId,
) -> Result<&'w mut Instance> {
    caller.check(
        world,
        caller.action,
        &instance_arn(caller.account(), region, id.as_str()),
        &[],
        None,
    )?;
    own_instance(world, caller, region, id)
}

/// The grant EBS creates on a volume's key for the instance it is attached to (retired when
/// the volume leaves the instance).
fn grant_for_instance(
    world: &mut World,
    key: &str,
    region: &Region,
    instance: &InstanceId,
    volume: &VolumeId,
) {
    let Some((owner, r, id)) = key_parts(key) else {
        return;
    };
    let grant_id = new_id(world, "grant");
    if let Some(key) = region_mut(world, &owner, &r).keys.get_mut(&id) {
        key.grants.push(GrantState {
            id: grant_id,
            grantee: format!("ec2.{region}.amazonaws.com/{instance}"),
            operations: vec!["Decrypt".into()],
            for_volume: Some(volume.clone()),
        });
    }
}

/// Tagging on create needs `ec2:CreateTags` on what is created.
fn check_tags(world: &World, caller: &Caller, tags: &[Tag], arn: &str) -> Result<()> {
    if tags.is_empty() {
        Ok(())
    } else {
        caller.check(
            world,
            Action::Ec2CreateTags,
            arn,
            &[("ec2:CreateAction", caller.action.name().to_owned())],
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
            caller.action,
            "InvalidKMSKey.Id",
            format!("{arn} is not a key ARN"),
        )
    })?;
    ebs_may_use(world, caller, &owner, &region, &id)
}

fn resolve_key_arn(world: &mut World, caller: &Caller, region: &Region, reference: &str) -> Result<String> {
    let (owner, id) = resolve_key(world, caller.action, caller.account(), region, reference)?;
    Ok(key_arn(&owner, region, &id))
}

fn default_key_arn(world: &mut World, account: &AccountId, region: &Region) -> String {
    let (owner, id) = default_key(world, account, region);
    key_arn(&owner, region, &id)
}

/// What a client token made in `account`/`region`, if it was used before.
fn made_with(world: &World, account: &AccountId, region: &Region, token: Option<&str>) -> Option<String> {
    world
        .tokens
        .get(&format!("{account}/{region}/{}", token?))
        .cloned()
}

/// Remembers what a client token made.
fn remember_token(world: &mut World, account: &AccountId, region: &Region, token: Option<&str>, id: &str) {
    if let Some(token) = token {
        world
            .tokens
            .insert(format!("{account}/{region}/{token}"), id.to_owned());
    }
}

/// Whether `tags` all appear in `held`.
/// The caller's own resources of one kind in `region` that carry every tag of `tags` (a
/// describe filtered by `tag:` filters), once the caller may describe.
fn own_tagged<K, R, T>(
    world: &World,
    caller: &Caller,
    region: &Region,
    tags: &[Tag],
    all: impl Fn(&RegionState) -> &std::collections::BTreeMap<K, R>,
    tags_of: impl Fn(&R) -> &[Tag],
    info: impl Fn(&AccountId, &Region, &K, &R) -> T,
) -> Result<Vec<T>> {
    caller.check(world, caller.action, "*", &[], None)?;
    let owner = caller.account();
    Ok(region_of(world, owner, region)
        .map(|r| {
            all(r)
                .iter()
                .filter(|(_, x)| tagged(tags_of(x), tags))
                .map(|(id, x)| info(owner, region, id, x))
                .collect()
        })
        .unwrap_or_default())
}

fn tagged(held: &[Tag], tags: &[Tag]) -> bool {
    tags.iter().all(|t| held.contains(t))
}

fn snapshot_info(owner: &AccountId, region: &Region, id: &SnapshotId, s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: id.clone(),
        owner: owner.clone(),
        region: region.clone(),
        volume: s.volume.clone(),
        size_gib: s.size_gib,
        state: crate::clock::snapshot_state(s, crate::clock::now()),
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
        state: crate::clock::volume_state(v, crate::clock::now()).into(),
        encryption: v.key.clone().map(|key_arn| bulwark_cloud::Encryption { key_arn }),
        attachment: v.attachment.clone(),
        attachment_state: crate::clock::attachment_state(v, crate::clock::now()).map(str::to_owned),
        tags: v.tags.clone(),
        performance: v.performance.or_else(|| {
            bulwark_model::VolumeType::Gp2
                .performance(v.size_gib, None, None)
                .ok()
        }),
    }
}

fn instance_info(owner: &AccountId, region: &Region, id: &InstanceId, i: &Instance) -> InstanceInfo {
    InstanceInfo {
        id: id.clone(),
        owner: owner.clone(),
        region: region.clone(),
        state: crate::clock::instance_state(i, crate::clock::now()),
        state_reason: i.state_reason.clone(),
        volumes: i.volumes.clone(),
        instance_profile: i.profile.clone(),
        tags: i.tags.clone(),
        availability_zone: Some(zone_of(region, &i.zone)),
        setup: bulwark_cloud::InstanceSetup {
            instance_type: Some(i.instance_type.clone()).filter(|t| !t.is_empty()),
            subnet: i.subnet.clone(),
            security_groups: i.security_groups.clone(),
            boot: i.boot.clone(),
            deleted_on_termination: i.deleted_on_termination.clone(),
        },
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
fn zone_in(action: Action, region: &Region, zone: Option<&str>) -> Result<String> {
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

fn parse_id<T: std::str::FromStr>(action: Action, code: &str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| CloudError::invalid(action, code, format!("'{s}' is not a valid id")))
}

/// The account, region and name of a queue URL (`https://sqs.R.amazonaws.com/A/name`).
fn parse_queue(action: Action, url: &str) -> Result<(AccountId, Region, String)> {
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

fn no_queue(action: Action, url: &str) -> CloudError {
    CloudError::not_found(
        action,
        "AWS.SimpleQueueService.NonExistentQueue",
        format!("The specified queue {url} does not exist."),
    )
}

fn validation(action: Action, reason: &str, message: impl Into<String>) -> CloudError {
    CloudError::invalid(
        action,
        "ValidationException",
        format!("{reason}: {}", message.into()),
    )
}

fn queue_arn(region: &Region, account: &AccountId, name: &str) -> String {
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

fn queue_url(region: &Region, account: &AccountId, name: &str) -> String {
    format!("https://sqs.{region}.amazonaws.com/{account}/{name}")
}

/// Checks a queue call against the caller's policies and the queue's policy.
fn check_queue(world: &World, caller: &Caller, url: &str) -> Result<(AccountId, Region, String)> {
    let (account, region, name) = parse_queue(caller.action, url)?;
    let queue = region_of(world, &account, &region)
        .and_then(|r| r.queues.get(&name))
        .ok_or_else(|| no_queue(caller.action, url))?;
    let arn = queue_arn(&region, &account, &name);
    let policy = queue
        .policy
        .clone()
        .unwrap_or_else(|| r#"{"Version":"2012-10-17","Statement":[]}"#.into());
    caller.check(
        world,
        caller.action,
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

// ---- helpers of the calls above --------------------------------------------------------------

/// A snapshot the caller may read block by block: visible to it and completed.
fn readable_snapshot(
    world: &World,
    caller: &Caller,
    region: &Region,
    id: &SnapshotId,
) -> Result<(AccountId, Snapshot)> {
    let (owner, s) = visible_snapshot(world, caller, region, id)
        .map_err(|e| CloudError::not_found(caller.action, "ResourceNotFoundException", e.message))?;
    let state = crate::clock::snapshot_state(&s, crate::clock::now());
    if state != "completed" {
        return Err(validation(
            caller.action,
            "INVALID_SNAPSHOT_STATE",
            format!("snapshot {id} is {state}"),
        ));
    }
    Ok((owner, s))
}

fn block_token(snapshot: &SnapshotId, index: u64) -> String {
    BASE64.encode(format!("{snapshot}:{index}"))
}

fn page(
    action: Action,
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
fn direct_key_use(world: &World, caller: &Caller, arn: &str, actions: &[Action]) -> Result<()> {
    let (owner, region, id) = key_parts(arn).ok_or_else(|| {
        CloudError::invalid(
            caller.action,
            "ValidationException",
            format!("{arn} is not a key ARN"),
        )
    })?;
    let key = crate::rules::key(world, &owner, &region, &id).ok_or_else(|| {
        validation(
            caller.action,
            "INVALID_CUSTOMER_KEY",
            format!("key {arn} does not exist"),
        )
    })?;
    for action in actions {
        caller
            .check_key(world, &owner, &region, key, *action, true)
            .map_err(|e| {
                CloudError::denied(caller.action, format!("DEPENDENCY_ACCESS_DENIED: {}", e.message))
            })?;
    }
    Ok(())
}

fn kms_key(
    world: &mut World,
    caller: &Caller,
    region: &Region,
    reference: &str,
) -> Result<(AccountId, crate::state::Key)> {
    let (owner, id) = resolve_key(world, caller.action, caller.account(), region, reference)?;
    if reference.ends_with("alias/aws/ebs") {
        aws_ebs_key(world, &owner, region);
    }
    let key = crate::rules::key(world, &owner, region, &id)
        .cloned()
        .ok_or_else(|| {
            CloudError::not_found(
                caller.action,
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
            caller.action,
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

fn seal(action: Action, material: &str, arn: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
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
            caller.action,
            "NoSuchEntity",
            format!("The role with name {} cannot be found.", role.name()),
        )
    })
}

fn own_profile<'w>(world: &'w mut World, caller: &Caller, arn: &str) -> Result<&'w mut Profile> {
    let account = caller.account().clone();
    let name = arn.rsplit('/').next().unwrap_or_default().to_owned();
    let action = caller.action;
    let a = world.accounts.entry(account.clone()).or_default();
    a.profiles
        .get_mut(&name)
        .filter(|p| profile_arn(&account, &p.path, &p.name) == arn)
        .ok_or_else(|| {
            CloudError::not_found(
                action,
                "NoSuchEntity",
                format!("Instance Profile {arn} cannot be found."),
            )
        })
}

fn check_path(action: Action, path: &str) -> Result<()> {
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
