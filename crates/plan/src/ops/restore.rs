//! Restores of a whole instance (seeds: "IAM role permissions on CMKs", restoring from
//! cloud-native snapshots and from image-level backups).
//!
//! From snapshots (no workers), by where the target is:
//! - same account and region: the restore role creates volumes from the snapshots; it needs
//!   the source keys and the target key;
//! - same account, another region: the backup role (which made the snapshots) copies them to
//!   the target region under the target key, then the restore role creates volumes there;
//! - another account, same region: the backup role shares the snapshots (refused for
//!   `aws/ebs`), the target account's restore role creates volumes; it needs the source keys
//!   and the target key;
//! - another account and region: the backup role copies the snapshots to the target region
//!   in the source account, under that account's default key of the target region, and
//!   shares the copies (refused if that default key is `aws/ebs`); the restore role needs
//!   that default key and the target key.
//!
//! From backups, with a worker:
//! - worker in the target account: it writes into new volumes under the target key; the role
//!   that deploys it needs the target key;
//! - worker in another account: it writes into volumes of its own account under that
//!   account's default key of the target region, which are snapshotted and shared with the
//!   target account (refused if that default key is `aws/ebs`); the restore role creates the
//!   final volumes and needs that default key and the target key.
//!
//! From backups without workers (`--workers none`): the target account's restore role writes
//! each volume's restore point into a new snapshot through the EBS direct APIs, under the
//! target key, then creates the volumes from it. It needs the target key for the EBS direct
//! APIs and for the volumes; nothing is shared.

use bulwark_model::{AccountId, Instance, InstanceId, KeyRef, Region, VolumeId, VolumeType};

use crate::build::Builder;
use crate::operation::{Launch, Placement, RestoreSource, WorkerAccount};
use crate::refusal::{Refusal, RefusalCode};
use crate::resource::{InstanceRef, Machine, NewVolume, Resource, Snapshot, SnapshotOrigin, VolumeOrigin};
use crate::rules;

/// Where a restore goes.
pub(crate) struct Target<'a> {
    pub account: &'a AccountId,
    pub region: &'a Region,
    pub key: Option<&'a KeyRef>,
    /// Launch an instance with the restored volumes, so (a whole-instance restore), or leave
    /// them as volumes (`None`: a volume restore).
    pub launch: Option<&'a Launch>,
    /// A volume restore's instance to attach the volumes to, with their devices (in the
    /// order of the instance's volumes).
    pub attach: Option<(&'a InstanceId, &'a [String])>,
}

/// Plans a restore from `from`, with workers as `workers` says for backups.
pub(crate) fn plan(
    b: &mut Builder,
    instance: &Instance,
    target: &Target,
    from: RestoreSource,
    workers: Option<Placement>,
) -> Result<String, Refusal> {
    match from {
        RestoreSource::Snapshot => from_snapshot(b, instance, target),
        RestoreSource::Backup => match workers.unwrap_or(Placement::BackupAccount).worker() {
            Some(account) => from_backup(b, instance, target, account),
            None => from_backup_direct(b, instance, target),
        },
    }
}

/// The instance with only `volumes` (each one of its own), for a volume restore.
pub(crate) fn some_volumes(instance: &Instance, volumes: &[VolumeId]) -> Result<Instance, Refusal> {
    let have = || {
        instance
            .volumes
            .iter()
            .map(|v| v.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if volumes.is_empty() {
        return Err(Refusal::new(
            RefusalCode::UnknownVolume,
            format!("a volume restore of {} names no volume", instance.id),
            format!("name one or more of its volumes: {}", have()),
        ));
    }
    if let Some(v) = volumes
        .iter()
        .find(|v| !instance.volumes.iter().any(|iv| &iv.id == *v))
    {
        return Err(Refusal::new(
            RefusalCode::UnknownVolume,
            format!("instance {} has no volume {v}", instance.id),
            format!("name one of its volumes: {}", have()),
        ));
    }
    let mut some = instance.clone();
    some.volumes.retain(|v| volumes.contains(&v.id));
    Ok(some)
}

/// The restored volumes become an instance, or stay volumes (kept: removed only if the
/// session fails).
fn deliver(
    b: &mut Builder,
    role: &bulwark_model::RoleArn,
    target: &Target,
    instance: &Instance,
    volumes: &[NewVolume],
) {
    if let Some(launch) = target.launch {
        b.launch_restored(role, target.region, instance, volumes, launch);
        return;
    }
    if let Some((to, devices)) = target.attach {
        let machine = Machine::Existing(InstanceRef {
            account: target.account.clone(),
            region: target.region.clone(),
            id: to.clone(),
        });
        for (volume, device) in volumes.iter().zip(devices) {
            b.attach_at(role, volume, machine.clone(), Some(device), true);
        }
    }
}

/// Checks a restored instance's network: ids EC2 takes (`subnet-` and `sg-`, then 8 or 17
/// lowercase hex digits), groups only with a subnet (they belong to its VPC).
pub(crate) fn check_launch(launch: &Launch) -> Result<(), Refusal> {
    let id_ok = |id: &str, prefix: &str| {
        id.strip_prefix(prefix).is_some_and(|hex| {
            matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    let refuse = |message: String, remedy: &str| Err(Refusal::new(RefusalCode::BadNetwork, message, remedy));
    if let Some(subnet) = launch.subnet.as_deref().filter(|s| !id_ok(s, "subnet-")) {
        return refuse(
            format!("{subnet:?} is not a subnet id"),
            "give a subnet id of the target account and region, like subnet-0123456789abcdef0",
        );
    }
    if let Some(group) = launch.security_groups.iter().find(|g| !id_ok(g, "sg-")) {
        return refuse(
            format!("{group:?} is not a security group id"),
            "give security group ids of the subnet's VPC, like sg-0123456789abcdef0",
        );
    }
    if launch.subnet.is_none() && !launch.security_groups.is_empty() {
        return refuse(
            "security groups are given without a subnet".into(),
            "give the subnet they belong with (security groups belong to a VPC), or leave them out",
        );
    }
    Ok(())
}

/// Checks a volume restore's type, IOPS and throughput against each volume's size, as
/// CreateVolume would (`VolumeType::performance`).
pub(crate) fn check_performance(
    instance: &Instance,
    volume_type: Option<VolumeType>,
    iops: Option<u32>,
    throughput: Option<u32>,
) -> Result<(), Refusal> {
    let Some(volume_type) =
        volume_type.or((iops.is_some() || throughput.is_some()).then_some(VolumeType::Gp3))
    else {
        return Ok(());
    };
    for v in &instance.volumes {
        if let Err(refused) = volume_type.performance(v.size_gib, iops, throughput) {
            return Err(Refusal::new(
                RefusalCode::BadVolumeType,
                format!(
                    "{} ({} GiB) cannot be restored as {volume_type}: {} ({})",
                    v.id, v.size_gib, refused.message, refused.code
                ),
                "give a type, IOPS and throughput CreateVolume accepts for a volume of that size (the message says which limit)",
            ));
        }
    }
    Ok(())
}

/// Checks what a volume restore attaches: a device for each volume, each a name EC2 takes
/// for an EBS volume (`/dev/sd[f-p]`, `/dev/xvd[f-p]`, or those with a digit), none twice.
pub(crate) fn check_attach(
    volumes: &[VolumeId],
    attach_to: Option<&InstanceId>,
    devices: &[String],
    zone: Option<&str>,
) -> Result<(), Refusal> {
    let refuse =
        |message: String, remedy: &str| Err(Refusal::new(RefusalCode::BadAttachment, message, remedy));
    let Some(to) = attach_to else {
        if devices.is_empty() {
            return Ok(());
        }
        return refuse(
            "devices are given but no instance to attach to".into(),
            "give the instance (attach_to) or leave the devices out",
        );
    };
    if zone.is_some() {
        return refuse(
            format!("a zone is given for volumes attached to {to}, which must be in its zone"),
            "leave the zone out: the volumes are made in the zone of the instance they are attached to",
        );
    }
    if devices.len() != volumes.len() {
        return refuse(
            format!(
                "{} volume(s) to attach to {to}, {} device(s)",
                volumes.len(),
                devices.len()
            ),
            "give one device per volume, in the same order, like /dev/sdf",
        );
    }
    for (i, d) in devices.iter().enumerate() {
        let name = d
            .strip_prefix("/dev/sd")
            .or_else(|| d.strip_prefix("/dev/xvd"))
            .unwrap_or("");
        let mut chars = name.chars();
        let letter_ok = chars.next().is_some_and(|c| ('f'..='p').contains(&c));
        let rest: String = chars.collect();
        if !letter_ok
            || !(rest.is_empty() || (rest.len() == 1 && rest.chars().all(|c| c.is_ascii_digit() && c != '0')))
        {
            return refuse(
                format!("device {d:?} is not a device name EC2 attaches EBS volumes at"),
                "give a name from /dev/sdf to /dev/sdp (or /dev/xvdf to /dev/xvdp)",
            );
        }
        if devices[..i].contains(d) {
            return refuse(
                format!("device {d} is given twice"),
                "give each volume its own device",
            );
        }
    }
    Ok(())
}

/// What is restored, in words: the instance, or some of its volumes.
fn what_is_restored(instance: &Instance, target: &Target) -> String {
    if target.launch.is_some() {
        return format!(
            "restore of {} ({}/{})",
            instance.id, instance.account, instance.region
        );
    }
    let ids: Vec<&str> = instance.volumes.iter().map(|v| v.id.as_str()).collect();
    format!(
        "restore of volume{} {} of {} ({}/{})",
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", "),
        instance.id,
        instance.account,
        instance.region
    )
}

fn from_snapshot(b: &mut Builder, instance: &Instance, target: &Target) -> Result<String, Refusal> {
    let source_role = b.backup_role(&instance.account)?;
    let restore_role = b.restore_role(target.account)?;
    // The restore points: the instance's latest cloud-native snapshots.
    let points: Vec<Snapshot> = instance
        .volumes
        .iter()
        .map(|v| Snapshot {
            owner: instance.account.clone(),
            region: instance.region.clone(),
            volume: v.id.clone(),
            origin: SnapshotOrigin::Volume,
            key: v.key.clone(),
        })
        .collect();
    let same_account = target.account == &instance.account;
    let same_region = target.region == &instance.region;

    let sources: Vec<Snapshot> = match (same_account, same_region) {
        (true, true) => points,
        (true, false) => points
            .iter()
            .map(|s| {
                b.copy_snapshot(
                    &source_role,
                    s,
                    target.region,
                    target.key,
                    false,
                    "a temporary copy in the target region",
                )
            })
            .collect(),
        (false, true) => {
            let remedy = format!(
                "restore into account {} (the snapshot's own account), or into another region, where \
                 the copy is re-encrypted under account {}'s default EBS key of that region (which \
                 must then be a customer managed key allowing account {})",
                instance.account, instance.account, target.account
            );
            for s in &points {
                b.share(&source_role, s, target.account, &remedy)?;
            }
            points
        }
        (false, false) => {
            let remedy = format!(
                "make the default EBS key of account {} in {} a customer managed key whose key policy \
                 allows account {} (ModifyEbsDefaultKmsKeyId, and list it under [default_keys]), or \
                 restore into account {}",
                instance.account, target.region, target.account, instance.account
            );
            let copies: Vec<Snapshot> = points
                .iter()
                .map(|s| {
                    b.copy_snapshot(
                        &source_role,
                        s,
                        target.region,
                        None,
                        false,
                        "a temporary copy in the target region, in the source account",
                    )
                })
                .collect();
            for c in &copies {
                b.share(&source_role, c, target.account, &remedy)?;
            }
            copies
        }
    };
    let volumes: Vec<_> = sources
        .iter()
        .map(|s| b.volume_from_snapshot(&restore_role, s, target.key, VolumeOrigin::Restored, true))
        .collect();
    deliver(b, &restore_role, target, instance, &volumes);
    Ok(format!(
        "{} from its cloud-native snapshots into {}/{}",
        what_is_restored(instance, target),
        target.account,
        target.region
    ))
}

fn from_backup(
    b: &mut Builder,
    instance: &Instance,
    target: &Target,
    placement: WorkerAccount,
) -> Result<String, Refusal> {
    let repository = b.repository()?;
    let restore_role = b.restore_role(target.account)?;
    let appliance = &b.estate.appliance;
    let (deployer, worker_account) = match placement {
        WorkerAccount::Backup => (
            appliance.worker_deployment_role.clone(),
            appliance.account.clone(),
        ),
        WorkerAccount::Production => (restore_role.clone(), target.account.clone()),
    };
    let estate = b.estate;
    let worker = b.deploy_worker(placement, &deployer, target.region, instance)?;

    let restored = if &worker_account == target.account {
        let mut volumes = Vec::new();
        let mut attachments = Vec::new();
        for v in &instance.volumes {
            let key = restored_key(estate, v.key.as_ref(), target);
            let words = key_words(key.as_ref(), target.key.is_some());
            let volume = b.empty_volume(&deployer, target.region, v, key.as_ref(), true, &words);
            attachments.push(b.attach(
                &deployer,
                &volume,
                Machine::Worker(worker.instance.clone()),
                false,
            ));
            volumes.push(volume);
        }
        b.transfer(&worker, repository, false, &volumes);
        for attachment in attachments {
            b.release(&Resource::Attachment(attachment));
        }
        volumes
    } else {
        // The data stays encrypted while it is in the worker's account, under that account's
        // default key of the target region, whatever it was originally.
        let interim_key = estate.default_key(&worker_account, target.region);
        let words = format!("encrypted with the default EBS key of {worker_account} in {}, {interim_key}, while the data is in the worker's account", target.region);
        let mut interim = Vec::new();
        for v in &instance.volumes {
            let volume = b.empty_volume(&deployer, target.region, v, Some(&interim_key), false, &words);
            b.attach(
                &deployer,
                &volume,
                Machine::Worker(worker.instance.clone()),
                false,
            );
            interim.push(volume);
        }
        b.transfer(&worker, repository, false, &interim);
        let remedy = format!(
            "deploy the workers in the target account (`--workers production-account`, with a \
             worker_role for account {}), or make the default EBS key of account {worker_account} in \
             {} a customer managed key whose key policy allows account {} (and list it under \
             [default_keys])",
            target.account, target.region, target.account
        );
        let snapshots: Vec<Snapshot> = interim
            .iter()
            .map(|volume| b.snapshot_volume(&deployer, volume))
            .collect();
        for s in &snapshots {
            b.share(&deployer, s, target.account, &remedy)?;
        }
        snapshots
            .iter()
            .map(|s| b.volume_from_snapshot(&restore_role, s, target.key, VolumeOrigin::Restored, true))
            .collect()
    };
    deliver(b, &restore_role, target, instance, &restored);
    Ok(format!(
        "{} from its latest image-level backup into {}/{}, worker in account {worker_account}",
        what_is_restored(instance, target),
        target.account,
        target.region
    ))
}

fn from_backup_direct(b: &mut Builder, instance: &Instance, target: &Target) -> Result<String, Refusal> {
    let repository = b.repository()?;
    let restore_role = b.restore_role(target.account)?;
    let keys: Vec<Option<KeyRef>> = instance
        .volumes
        .iter()
        .map(|v| restored_key(b.estate, v.key.as_ref(), target))
        .collect();
    let default = b.estate.default_key(target.account, target.region);
    if let Some(k) = keys
        .iter()
        .flatten()
        .find(|k| k.is_aws_managed() && **k != default)
    {
        return Err(Refusal::new(
            RefusalCode::AwsManagedKeyNotDefault,
            format!(
                "the EBS direct APIs can encrypt with {k} only as the default EBS key of {}/{}, which is {default}",
                target.account, target.region
            ),
            "give a customer managed key as the target key, or restore with workers",
        ));
    }
    let written = b.write_direct(&restore_role, target.region, instance, &keys, repository);
    let volumes: Vec<_> = written
        .iter()
        .map(|s| b.volume_from_snapshot(&restore_role, s, target.key, VolumeOrigin::Restored, true))
        .collect();
    deliver(b, &restore_role, target, instance, &volumes);
    Ok(format!(
        "{} from its latest image-level backup into {}/{} through the EBS direct APIs, no worker",
        what_is_restored(instance, target),
        target.account,
        target.region
    ))
}

/// The key of a volume restored from a backup into a new volume or snapshot: the target key,
/// else, for a volume that was encrypted (never restored unencrypted), the default key of
/// the target account and region; else what encryption by default gives.
fn restored_key(
    estate: &bulwark_model::Estate,
    original: Option<&KeyRef>,
    target: &Target,
) -> Option<KeyRef> {
    let wanted = target
        .key
        .cloned()
        .or_else(|| original.map(|_| estate.default_key(target.account, target.region)));
    rules::written_snapshot_key(estate, target.account, target.region, wanted.as_ref())
}

fn key_words(key: Option<&KeyRef>, requested: bool) -> String {
    match (key, requested) {
        (None, _) => "unencrypted, like the original volume".to_owned(),
        (Some(k), true) => format!("encrypted with the requested key {k}"),
        (Some(k), false) => {
            format!("encrypted with the default EBS key of the target account and region, {k}")
        }
    }
}
