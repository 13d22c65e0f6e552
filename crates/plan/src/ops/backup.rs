//! Image-level backups (seeds: "creating image-level backups" and "IAM role permissions on
//! CMKs"). The backup role snapshots the instance; a worker reads volumes re-created from
//! the snapshots into the repository.
//!
//! - Worker in the instance's account (production placement, or an instance of the backup
//!   account itself): the volumes are created from the account's own snapshots and keep
//!   their keys; the role that deploys the worker needs the source keys.
//! - Worker in the backup account, instance elsewhere: the snapshots are shared with the
//!   backup account, and the volumes re-created there are encrypted with the backup
//!   account's default EBS key of the region (AWS requires it for shared encrypted
//!   snapshots). The worker deployment role needs the source keys and that default key. A
//!   volume under `aws/ebs` cannot be shared, so this case is refused with the remedy of
//!   deploying workers in the production account.
//!
//! Without workers (`--workers none`), the backup role reads the snapshots itself through the
//! EBS direct APIs, in the instance's account: no volume, no sharing, and `aws/ebs` is no
//! obstacle. It needs `kms:Decrypt` on the volume keys.
//!
//! Either way the snapshots are kept until the next backup, which reads only the blocks changed
//! since them: with workers, the backup role lists them (ListChangedBlocks, which needs
//! `kms:Decrypt` on the volume keys too) in the instance's account and hands the list to the
//! worker with its task.

use bulwark_model::Instance;

use crate::build::{Builder, SnapshotPurpose};
use crate::operation::WorkerAccount;
use crate::refusal::Refusal;
use crate::resource::{Machine, VolumeOrigin};

pub(crate) fn plan(
    b: &mut Builder,
    instance: &Instance,
    placement: WorkerAccount,
) -> Result<String, Refusal> {
    let repository = b.repository()?;
    let backup_role = b.backup_role(&instance.account)?;
    let appliance = &b.estate.appliance;
    let (deployer, worker_account) = match placement {
        WorkerAccount::Backup => (
            appliance.worker_deployment_role.clone(),
            appliance.account.clone(),
        ),
        WorkerAccount::Production => (backup_role.clone(), instance.account.clone()),
    };

    let snapshots = b.snapshot_instance(&backup_role, instance, SnapshotPurpose::Base);
    if worker_account != instance.account {
        let remedy = format!(
            "deploy the workers in the production account (`--workers production-account`, with a \
             worker_role for account {}), so that the snapshot never leaves its account; or \
             re-encrypt the volume with a customer managed key whose key policy allows account \
             {worker_account}",
            instance.account
        );
        for snapshot in &snapshots {
            b.share(&backup_role, snapshot, &worker_account, &remedy)?;
        }
    }
    // The changes are listed in the snapshots' own account, whoever reads them: a volume made
    // from a shared snapshot holds the same blocks.
    b.list_changes(&backup_role, &snapshots, repository);
    let worker = b.deploy_worker(placement, &deployer, &instance.region, instance)?;
    let mut volumes = Vec::new();
    for snapshot in &snapshots {
        let volume = b.volume_from_snapshot(&deployer, snapshot, None, VolumeOrigin::ForWorker, false);
        b.attach(
            &deployer,
            &volume,
            Machine::Worker(worker.instance.clone()),
            false,
        );
        volumes.push(volume);
    }
    b.transfer(&worker, repository, true, &volumes);
    Ok(format!(
        "image-level backup of {} ({}/{}) into s3://{}/{}, worker in the {} {worker_account}",
        instance.id,
        instance.account,
        instance.region,
        repository.bucket,
        repository.prefix,
        match placement {
            WorkerAccount::Backup => "backup account",
            WorkerAccount::Production => "production account",
        }
    ))
}

/// A backup without workers, through the EBS direct APIs.
pub(crate) fn direct(b: &mut Builder, instance: &Instance) -> Result<String, Refusal> {
    let repository = b.repository()?;
    let backup_role = b.backup_role(&instance.account)?;
    let snapshots = b.snapshot_instance(&backup_role, instance, SnapshotPurpose::Base);
    b.read_direct(&backup_role, &snapshots, repository);
    Ok(format!(
        "image-level backup of {} ({}/{}) into s3://{}/{} through the EBS direct APIs, no worker",
        instance.id, instance.account, instance.region, repository.bucket, repository.prefix,
    ))
}
