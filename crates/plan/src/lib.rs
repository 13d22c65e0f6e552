//! Bulwark's planner: a pure function from an operation and an [`Estate`] to a [`Plan`] (every
//! API call in order, who makes it where, on what, with which KMS key permissions and why, and
//! the cleanup) or a [`Refusal`] (a stable code, the reason, the remedy) where AWS would refuse
//! later. From a plan, [`policies`] derives the least-privilege IAM policies, trust policies
//! and KMS key-policy statements.
//!
//! Where the knowledge comes from:
//! - which role does what, and which keys it needs: the seed documents in `reference/seeds/`
//!   (worker deployment options, worker IAM role permissions, image-level backups of
//!   encrypted volumes, IAM role permissions on CMKs). Each operation's module cites them.
//! - what AWS allows: `reference/aws-rules.md`, made executable in [`rules`].
//!
//! Design: plan, then execute (as rustic_core separates `prune_plan` from `prune`). The plan
//! is complete before anything runs, so a refusal means nothing ran. Every step that creates
//! something registers its undo, so cleanup cannot forget a resource.
//!
//! This crate does no I/O, prints nothing, and depends only on `bulwark-model`.
#![deny(missing_docs)]

mod build;
mod cloudformation;
mod grants;
mod json;
mod operation;
mod ops;
mod policy;
mod refusal;
mod resource;
pub mod rules;
mod step;

use bulwark_model::Estate;

pub use build::worker_instance_type;
pub use cloudformation::cloudformation;
pub use grants::Grants;
pub use operation::{ExpiredSnapshot, Launch, Operation, Placement, RestoreSource};
pub use policy::{
    discovery_statement, maintenance_statements, policies, worker_role_permissions, worker_role_trust,
    KeyPolicy, Policies, RolePolicy, DISCOVERY_ACTIONS, MAINTENANCE_ACTIONS,
};
pub use refusal::{Refusal, RefusalCode};
pub use resource::{
    Attachment, InstanceRef, Machine, NewVolume, QueueRef, RepositoryRef, Resource, RestoredRef, Share,
    Snapshot, SnapshotOrigin, VolumeOrigin, WorkerIdentity, WorkerRef, NAME_PREFIX,
};
pub use step::{
    Actor, Call, DataPath, KeyGrant, KeyNeed, KeyUse, Permission, Plan, Removal, Step, CREATE_GRANT,
    DIRECT_WRITE_KEY_ACTIONS, EBS_KEY_ACTIONS,
};

/// Plans `operation` on `estate`, or refuses it.
pub fn plan(estate: &Estate, operation: &Operation) -> Result<Plan, Refusal> {
    let mut b = build::Builder::new(estate);
    let instance = || known_instance(estate, operation.instance());
    let summary = match operation {
        // The instance may be gone: its restore points are still the policy's to expire.
        Operation::Expire { instance, snapshots } => ops::expire::plan(&mut b, instance, snapshots)?,
        Operation::Snapshot { .. } => ops::snapshot::plan(&mut b, instance()?)?,
        Operation::Backup { workers, .. } => match workers.unwrap_or(Placement::BackupAccount).worker() {
            Some(account) => ops::backup::plan(&mut b, instance()?, account)?,
            None => ops::backup::direct(&mut b, instance()?)?,
        },
        Operation::Replicate {
            to_account,
            to_region,
            target_key,
            ..
        } => {
            let instance = instance()?;
            check_target(estate, to_account, to_region, target_key.as_ref())?;
            ops::replicate::plan(&mut b, instance, to_account, to_region, target_key.as_ref())?
        }
        Operation::Restore {
            from,
            to_account,
            to_region,
            target_key,
            workers,
            launch,
            ..
        } => {
            let instance = instance()?;
            check_target(estate, to_account, to_region, target_key.as_ref())?;
            ops::restore::check_launch(launch)?;
            let target = ops::restore::Target {
                account: to_account,
                region: to_region,
                key: target_key.as_ref(),
                launch: Some(launch),
                attach: None,
            };
            ops::restore::plan(&mut b, instance, &target, *from, *workers)?
        }
        Operation::RestoreVolumes {
            volumes,
            from,
            to_account,
            to_region,
            target_key,
            workers,
            zone,
            attach_to,
            devices,
            volume_type,
            iops,
            throughput,
            ..
        } => {
            let instance = ops::restore::some_volumes(instance()?, volumes)?;
            ops::restore::check_performance(&instance, *volume_type, *iops, *throughput)?;
            check_target(estate, to_account, to_region, target_key.as_ref())?;
            check_zone(zone.as_deref(), to_region)?;
            ops::restore::check_attach(volumes, attach_to.as_ref(), devices, zone.as_deref())?;
            // Devices in the order of the instance's volumes, as the restore makes them.
            let ordered: Vec<String> = instance
                .volumes
                .iter()
                .filter_map(|v| volumes.iter().position(|w| w == &v.id))
                .filter_map(|at| devices.get(at).cloned())
                .collect();
            let target = ops::restore::Target {
                account: to_account,
                region: to_region,
                key: target_key.as_ref(),
                launch: None,
                attach: attach_to.as_ref().map(|to| (to, ordered.as_slice())),
            };
            ops::restore::plan(&mut b, &instance, &target, *from, *workers)?
        }
    };
    b.finish(operation.clone(), summary)
}

/// An availability zone must be one of the target region's: its name and a letter.
fn check_zone(zone: Option<&str>, region: &bulwark_model::Region) -> Result<(), Refusal> {
    let Some(zone) = zone else {
        return Ok(());
    };
    let letter = zone.strip_prefix(region.as_str()).unwrap_or("");
    if letter.len() == 1 && letter.chars().all(|c| c.is_ascii_lowercase()) {
        return Ok(());
    }
    Err(Refusal::new(
        RefusalCode::ZoneNotInTargetRegion,
        format!("availability zone {zone:?} is not a zone of the target region {region}"),
        format!("give a zone of {region}, like {region}a"),
    ))
}

/// The instance an operation processes, which must be in the estate.
fn known_instance<'e>(
    estate: &'e Estate,
    id: &bulwark_model::InstanceId,
) -> Result<&'e bulwark_model::Instance, Refusal> {
    estate.instance(id).ok_or_else(|| {
        Refusal::new(
            RefusalCode::UnknownInstance,
            format!("instance {id} is not in the estate"),
            "add it as an [[instance]] of the estate file, with its account, region and volumes",
        )
    })
}

/// A target must be a known account, and a target key must live in the target region.
fn check_target(
    estate: &Estate,
    account: &bulwark_model::AccountId,
    region: &bulwark_model::Region,
    key: Option<&bulwark_model::KeyRef>,
) -> Result<(), Refusal> {
    if estate.account(account).is_none() {
        return Err(Refusal::new(
            RefusalCode::UnknownAccount,
            format!("account {account} is not in the estate"),
            format!("add an [[account]] with id = \"{account}\" and its roles to the estate file"),
        ));
    }
    match key {
        Some(key) if key.region() != region => Err(Refusal::new(
            RefusalCode::KeyNotInTargetRegion,
            format!(
                "the target key {key} is in {}, but the target region is {region}: KMS keys are regional",
                key.region()
            ),
            format!("give a key of {region} (a multi-Region key needs its replica ARN in {region})"),
        )),
        _ => Ok(()),
    }
}
