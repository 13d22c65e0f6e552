//! The plan builder: the sequences every operation shares (take snapshots, share one, copy
//! one, create a volume, deploy a worker, move data through the repository), each written
//! once with its rule. Every step that creates something temporary registers its undo, and
//! the cleanup is the undos in reverse order, so nothing a plan creates can be forgotten.

use std::collections::BTreeSet;

use bulwark_model::{AccountId, Estate, Instance, KeyRef, Region, Repository, RoleArn};

use crate::operation::{Operation, Placement};
use crate::refusal::{Refusal, RefusalCode};
use crate::resource::{Resource, Snapshot, SnapshotOrigin, VolumeOrigin, NAME_PREFIX};
use crate::rules;
use crate::step::{key_grants, Actor, KeyNeed, KeyUse, Permission, Plan, Step};

impl Step {
    /// Adds what the step creates; `kept` resources outlive the session.
    pub(crate) fn creating(mut self, resources: Vec<Resource>, kept: bool) -> Self {
        self.creates = resources;
        self.kept = kept;
        self
    }

    /// Adds a key the step uses.
    pub(crate) fn using_key(mut self, key: Option<&KeyRef>, usage: KeyUse, why: impl Into<String>) -> Self {
        if let Some(key) = key {
            let why = why.into();
            if !self.keys.iter().any(|k| &k.key == key && k.usage == usage) {
                self.keys.push(KeyNeed {
                    key: key.clone(),
                    usage,
                    why,
                });
            }
        }
        self
    }

    /// Adds a permission the call needs besides its action on its resource.
    pub(crate) fn also(mut self, action: &'static str, resources: Vec<String>) -> Self {
        for resource in resources {
            self.also.push(Permission { action, resource });
        }
        self
    }
}

/// A worker as deployed by [`Builder::deploy_worker`].
pub(crate) struct Worker {
    /// The worker instance.
    pub instance: Resource,
    /// The role attached to it.
    pub identity: Actor,
    /// The session queue it listens on.
    pub queue: Resource,
}

pub(crate) struct Builder<'e> {
    pub estate: &'e Estate,
    steps: Vec<Step>,
    /// Cleanup steps for temporary resources, in creation order; run in reverse.
    undo: Vec<Step>,
    /// Removal steps for kept resources, in creation order; run in reverse only if the
    /// session fails.
    rollback: Vec<Step>,
    assumed: BTreeSet<RoleArn>,
    /// Keys already read by a role before sharing (one kms:DescribeKey each is enough).
    described: BTreeSet<(RoleArn, KeyRef)>,
}

impl<'e> Builder<'e> {
    pub fn new(estate: &'e Estate) -> Self {
        Self {
            estate,
            steps: Vec::new(),
            undo: Vec::new(),
            rollback: Vec::new(),
            assumed: BTreeSet::new(),
            described: BTreeSet::new(),
        }
    }

    /// A step by `actor` in the actor's account.
    pub fn step(
        &self,
        actor: &Actor,
        region: Option<&Region>,
        action: &'static str,
        resource: Resource,
        why: impl Into<String>,
    ) -> Step {
        let account = actor
            .role()
            .map_or(&self.estate.appliance.account, RoleArn::account)
            .clone();
        Step {
            actor: actor.clone(),
            account,
            region: region.cloned(),
            action,
            resource,
            why: why.into(),
            creates: Vec::new(),
            kept: false,
            keys: Vec::new(),
            also: Vec::new(),
        }
    }

    /// Appends a step, preceded by the appliance assuming its role the first time the role
    /// acts. `undo` removes what the step creates: at cleanup if it is temporary, on failure
    /// only if it is kept.
    pub fn push(&mut self, step: Step, undo: Vec<Step>) {
        if let Actor::Role(role) = &step.actor {
            if self.assumed.insert(role.clone()) {
                let assume = self.assume_step(role);
                self.steps.push(assume);
            }
        }
        let kept = step.kept;
        self.steps.push(step);
        if kept {
            self.rollback.extend(undo);
        } else {
            self.undo.extend(undo);
        }
    }

    /// Moves the undo of `resource` into the main steps: the operation itself removes it
    /// (a restored volume detached from the worker before it joins the restored instance).
    pub fn release(&mut self, resource: &Resource) {
        if let Some(i) = self.undo.iter().rposition(|s| &s.resource == resource) {
            let step = self.undo.remove(i);
            self.steps.push(step);
        }
    }

    fn assume_step(&self, role: &RoleArn) -> Step {
        let external = self
            .estate
            .account(role.account())
            .and_then(|a| a.external_id.as_ref())
            .map_or(String::new(), |_| {
                ", with the account's external id (sts:ExternalId)".into()
            });
        self.step(
            &Actor::Appliance,
            None,
            "sts:AssumeRole",
            Resource::Role(role.clone()),
            format!(
                "the appliance acts in account {} through this role{external}; the role's trust \
                 policy must name the appliance and the appliance's policy must allow the call",
                role.account()
            ),
        )
    }

    pub fn finish(self, operation: Operation, summary: String) -> Result<Plan, Refusal> {
        let mut cleanup = self.undo;
        cleanup.reverse();
        let mut rollback = self.rollback;
        rollback.reverse();
        let key_grants = key_grants(self.steps.iter().chain(&cleanup).chain(&rollback));
        // Defence in depth: whatever path led here, no role may need another account's
        // aws/ebs key, because AWS never allows it.
        if let Some(g) = key_grants
            .iter()
            .find(|g| g.implicit() && g.role.role().is_some_and(|r| r.account() != g.key.account()))
        {
            return Err(Refusal::new(
                RefusalCode::AwsManagedKeyNotShareable,
                format!(
                    "the plan would need {} to use {}, an AWS managed key of another account",
                    g.role.role().map_or("", RoleArn::as_str),
                    g.key
                ),
                "encrypt the data with a customer managed key whose key policy allows that account",
            ));
        }
        Ok(Plan {
            appliance: self.estate.appliance.principal_arn(),
            operation,
            summary,
            steps: self.steps,
            key_grants,
            cleanup,
            rollback,
        })
    }

    // ---- roles ----------------------------------------------------------------------------

    fn account_role(
        &self,
        account: &AccountId,
        which: &str,
        pick: fn(&bulwark_model::Account) -> Option<&RoleArn>,
    ) -> Result<RoleArn, Refusal> {
        let Some(a) = self.estate.account(account) else {
            return Err(Refusal::new(
                RefusalCode::UnknownAccount,
                format!("account {account} is not in the estate"),
                format!("add an [[account]] with id = \"{account}\" and its roles to the estate file"),
            ));
        };
        pick(a).cloned().ok_or_else(|| {
            Refusal::new(
                RefusalCode::RoleNotConfigured,
                format!("the operation needs the {which} of account {account}, which the estate does not define"),
                format!("add {which} = \"arn:aws:iam::{account}:role/NAME\" to the [[account]] with id = \"{account}\" (see `bulwark policy plan` for its permissions)"),
            )
        })
    }

    /// The backup role of `account`: creates, shares and copies its snapshots.
    pub fn backup_role(&self, account: &AccountId) -> Result<RoleArn, Refusal> {
        self.account_role(account, "backup_role", |a| a.backup_role.as_ref())
    }

    /// The restore role of `account`: creates restored volumes and instances there.
    pub fn restore_role(&self, account: &AccountId) -> Result<RoleArn, Refusal> {
        self.account_role(account, "restore_role", |a| a.restore_role.as_ref())
    }

    pub fn repository(&self) -> Result<&'e Repository, Refusal> {
        self.estate.repository.as_ref().ok_or_else(|| {
            Refusal::new(
                RefusalCode::RepositoryNotConfigured,
                "image-level backups and restores need a repository, and the estate defines none",
                "add a [repository] section with bucket, region and role (the role workers use, \
                 through short-lived credentials, to read and write the repository)",
            )
        })
    }

    // ---- snapshots --------------------------------------------------------------------------

    /// Crash-consistent snapshots of every volume (ec2:CreateSnapshots). A snapshot of an
    /// encrypted volume is encrypted with the volume's key and the call takes no key, so the
    /// caller needs no KMS permission (seeds: "IAM role permissions on CMKs").
    pub fn snapshot_instance(&mut self, role: &RoleArn, instance: &Instance, kept: bool) -> Vec<Snapshot> {
        let actor = Actor::Role(role.clone());
        let region = &instance.region;
        let snapshots: Vec<Snapshot> = instance
            .volumes
            .iter()
            .map(|v| Snapshot {
                owner: instance.account.clone(),
                region: region.clone(),
                volume: v.id.clone(),
                origin: SnapshotOrigin::Volume,
                key: v.key.clone(),
            })
            .collect();
        let any_snapshot = Resource::Snapshot(snapshots[0].clone()).iam_resources(self.estate.partition());
        let p = self.estate.partition();
        let instance_resource = Resource::Instance {
            account: instance.account.clone(),
            region: region.clone(),
            id: instance.id.clone(),
        };
        let volumes: Vec<String> = instance
            .volumes
            .iter()
            .map(|v| {
                format!(
                    "arn:{}:ec2:{region}:{}:volume/{}",
                    p.as_str(),
                    instance.account,
                    v.id
                )
            })
            .collect();
        let purpose = if kept {
            "the cloud-native restore point"
        } else {
            "a temporary source for the worker, deleted when the session ends"
        };
        let step = self
            .step(
                &actor,
                Some(region),
                "ec2:CreateSnapshots",
                instance_resource,
                format!(
                    "snapshots of all {} volumes at one point in time, {purpose}; each is encrypted \
                     with its volume's key and the call takes no key, so no KMS permission is needed",
                    instance.volumes.len()
                ),
            )
            .creating(snapshots.iter().cloned().map(Resource::Snapshot).collect(), kept)
            .also("ec2:CreateSnapshots", volumes)
            .also("ec2:CreateSnapshots", any_snapshot.clone())
            .also("ec2:CreateTags", any_snapshot)
            .also("ec2:DescribeSnapshots", vec!["*".into()]);
        let undo = snapshots.iter().map(|s| self.delete_snapshot(role, s)).collect();
        self.push(step, undo);
        snapshots
    }

    fn delete_snapshot(&self, role: &RoleArn, snapshot: &Snapshot) -> Step {
        self.step(
            &Actor::Role(role.clone()),
            Some(&snapshot.region),
            "ec2:DeleteSnapshot",
            Resource::Snapshot(snapshot.clone()),
            "remove the snapshot: it was only needed during the session, or the session failed",
        )
    }

    /// A snapshot of a volume the plan created (ec2:CreateSnapshot; no key needed, as for
    /// CreateSnapshots).
    pub fn snapshot_volume(
        &mut self,
        role: &RoleArn,
        volume: &Resource,
        region: &Region,
        of: &bulwark_model::VolumeId,
    ) -> Snapshot {
        let snapshot = Snapshot {
            owner: role.account().clone(),
            region: region.clone(),
            volume: of.clone(),
            origin: SnapshotOrigin::Restored,
            key: volume.key().cloned(),
        };
        let arns = Resource::Snapshot(snapshot.clone()).iam_resources(self.estate.partition());
        let step = self
            .step(&Actor::Role(role.clone()), Some(&snapshot.region), "ec2:CreateSnapshot", volume.clone(), format!("snapshot the {volume} so that it can be shared; it keeps the volume's key and the call takes no key"))
            .creating(vec![Resource::Snapshot(snapshot.clone())], false)
            .also("ec2:CreateSnapshot", arns.clone())
            .also("ec2:CreateTags", arns)
            .also("ec2:DescribeSnapshots", vec!["*".into()]);
        let undo = vec![self.delete_snapshot(role, &snapshot)];
        self.push(step, undo);
        snapshot
    }

    /// Shares `snapshot` with `with` (ModifySnapshotAttribute, createVolumePermission add),
    /// removed again at cleanup. Refuses a snapshot under `aws/ebs`, as AWS would. Before
    /// sharing, Bulwark reads the key (kms:DescribeKey) to confirm it is customer managed:
    /// this is the sharing role's permission on the source key that the seeds require.
    pub fn share(
        &mut self,
        role: &RoleArn,
        snapshot: &Snapshot,
        with: &AccountId,
        remedy: &str,
    ) -> Result<(), Refusal> {
        let key = snapshot.key.as_ref();
        if !rules::shareable(key) {
            let Snapshot {
                volume,
                owner,
                region,
                ..
            } = snapshot;
            return Err(Refusal::new(
                RefusalCode::AwsManagedKeyNotShareable,
                format!(
                    "the snapshot of {volume} would be encrypted with the AWS managed key aws/ebs of \
                     account {owner} in {region}, and must be shared with account {with}: AWS refuses \
                     to share snapshots encrypted with aws/ebs (OperationNotPermitted)"
                ),
                remedy,
            ));
        }
        let actor = Actor::Role(role.clone());
        if let Some(key) = key.filter(|k| self.described.insert((role.clone(), (*k).clone()))) {
            let describe = self
                .step(
                    &actor,
                    Some(key.region()),
                    "kms:DescribeKey",
                    Resource::Key(key.clone()),
                    "confirm the snapshot's key is customer managed and enabled before sharing it",
                )
                .using_key(
                    Some(key),
                    KeyUse::Describe,
                    format!("the sharing role checks the key before it shares the snapshot with {with}"),
                );
            self.push(describe, Vec::new());
        }
        let share = Resource::SnapshotShare {
            snapshot: snapshot.clone(),
            with: with.clone(),
        };
        let region = Some(&snapshot.region);
        let why = match key {
            Some(_) => format!(
                "let account {with} create volumes from the snapshot; it can use them only if the \
                 key policy of the snapshot's key allows its role, and that role's IAM policy does too"
            ),
            None => format!("let account {with} create volumes from the unencrypted snapshot"),
        };
        let step = self
            .step(
                &actor,
                region,
                "ec2:ModifySnapshotAttribute",
                Resource::Snapshot(snapshot.clone()),
                why,
            )
            .creating(vec![share.clone()], false);
        let undo = self.step(
            &actor,
            region,
            "ec2:ModifySnapshotAttribute",
            share,
            format!("remove account {with}'s permission to create volumes from the snapshot"),
        );
        self.push(step, vec![undo]);
        Ok(())
    }

    /// Copies `source` into `destination` in the caller's account (CopySnapshot, called in
    /// the destination region). The caller uses the source key and the copy's key.
    pub fn copy_snapshot(
        &mut self,
        role: &RoleArn,
        source: &Snapshot,
        destination: &Region,
        requested: Option<&KeyRef>,
        kept: bool,
        purpose: &str,
    ) -> Snapshot {
        let Snapshot {
            owner,
            region,
            volume,
            key,
            ..
        } = source;
        let caller = role.account();
        let copy_key = rules::copy_key(
            self.estate,
            key.as_ref(),
            owner,
            region,
            caller,
            destination,
            requested,
        );
        let copy = Snapshot {
            owner: caller.clone(),
            region: destination.clone(),
            volume: volume.clone(),
            origin: SnapshotOrigin::Copy,
            key: copy_key.clone(),
        };
        let copy_arns = Resource::Snapshot(copy.clone()).iam_resources(self.estate.partition());
        let key_words = match (&copy_key, requested) {
            (None, _) => "unencrypted".to_owned(),
            (Some(k), Some(_)) => format!("encrypted with the requested key {k}"),
            (Some(k), None) if copy_key.as_ref() == key.as_ref() => format!("keeping its key {k}"),
            (Some(k), None) => format!("encrypted with the default EBS key of {caller} in {destination}, {k}, since no key was given"),
        };
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(destination),
                "ec2:CopySnapshot",
                Resource::Snapshot(source.clone()),
                format!("{purpose}: copy to {destination}, {key_words}"),
            )
            .creating(vec![Resource::Snapshot(copy.clone())], kept)
            .using_key(
                key.as_ref(),
                KeyUse::Ebs,
                format!("CopySnapshot decrypts the snapshot of {volume} in {region}."),
            )
            .using_key(
                copy_key.as_ref(),
                KeyUse::Ebs,
                format!("CopySnapshot encrypts the copy of {volume} in {destination}."),
            )
            .also("ec2:CopySnapshot", copy_arns.clone())
            .also("ec2:CreateTags", copy_arns)
            .also("ec2:DescribeSnapshots", vec!["*".into()]);
        let undo = vec![self.delete_snapshot(role, &copy)];
        self.push(step, undo);
        copy
    }

    // ---- volumes ----------------------------------------------------------------------------

    /// Creates a volume from a snapshot the caller owns or that was shared with it.
    pub fn volume_from_snapshot(
        &mut self,
        role: &RoleArn,
        snapshot: &Snapshot,
        requested: Option<&KeyRef>,
        origin: VolumeOrigin,
        kept: bool,
    ) -> Resource {
        let Snapshot {
            owner,
            region,
            volume,
            key,
            ..
        } = snapshot;
        let caller = role.account();
        let new_key =
            rules::volume_from_snapshot_key(self.estate, key.as_ref(), owner, caller, region, requested);
        let created = Resource::Volume {
            account: caller.clone(),
            region: region.clone(),
            of: volume.clone(),
            origin,
            key: new_key.clone(),
        };
        let key_words = match (&new_key, requested, owner == caller) {
            (None, _, _) => "unencrypted, like its snapshot".to_owned(),
            (Some(k), Some(_), _) => format!("encrypted with the requested key {k}"),
            (Some(k), None, true) if key.is_some() => {
                format!("keeping the snapshot's key {k}, as the caller owns the snapshot")
            }
            (Some(k), None, true) => {
                format!("encrypted with the default EBS key {k}, as encryption by default is on")
            }
            (Some(k), None, false) => format!(
                "encrypted, as AWS requires for a volume of an encrypted or shared snapshot, with the \
                 default EBS key of {caller} in {region}, {k}"
            ),
        };
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(region),
                "ec2:CreateVolume",
                Resource::Snapshot(snapshot.clone()),
                format!("create the {created}, {key_words}"),
            )
            .creating(vec![created.clone()], kept)
            .using_key(
                key.as_ref(),
                KeyUse::Ebs,
                format!(
                    "CreateVolume decrypts the snapshot of {volume} (its key, owned by {}).",
                    key.as_ref().map_or(caller, KeyRef::account)
                ),
            )
            .using_key(
                new_key.as_ref(),
                KeyUse::Ebs,
                format!("CreateVolume encrypts the new volume of {volume} in {caller}/{region}."),
            )
            .also("ec2:CreateVolume", created.iam_resources(p))
            .also("ec2:CreateTags", created.iam_resources(p))
            .also("ec2:DescribeVolumes", vec!["*".into()]);
        let undo = vec![self.delete_volume(role, &created)];
        self.push(step, undo);
        created
    }

    /// Creates an empty volume of the size of `of` for a worker to restore into.
    pub fn empty_volume(
        &mut self,
        role: &RoleArn,
        region: &Region,
        of: &bulwark_model::Volume,
        key: Option<&KeyRef>,
        kept: bool,
        key_words: &str,
    ) -> Resource {
        let caller = role.account();
        let created = Resource::Volume {
            account: caller.clone(),
            region: region.clone(),
            of: of.id.clone(),
            origin: if kept {
                VolumeOrigin::Restored
            } else {
                VolumeOrigin::Empty
            },
            key: key.cloned(),
        };
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        let step = self
            .step(
                &actor,
                Some(region),
                "ec2:CreateVolume",
                created.clone(),
                format!(
                    "create an empty {} GiB volume for the data of {}, {key_words}",
                    of.size_gib, of.id
                ),
            )
            .creating(vec![created.clone()], kept)
            .using_key(
                key,
                KeyUse::Ebs,
                format!(
                    "CreateVolume encrypts the volume for {} in {caller}/{region}.",
                    of.id
                ),
            )
            .also("ec2:CreateTags", created.iam_resources(p))
            .also("ec2:DescribeVolumes", vec!["*".into()]);
        let undo = vec![self.delete_volume(role, &created)];
        self.push(step, undo);
        created
    }

    fn delete_volume(&self, role: &RoleArn, volume: &Resource) -> Step {
        self.step(
            &Actor::Role(role.clone()),
            volume.region(),
            "ec2:DeleteVolume",
            volume.clone(),
            "remove the volume: it was only needed during the session, or the session failed",
        )
    }

    /// Attaches `volume` to `instance`. Attaching an encrypted volume needs kms:CreateGrant on
    /// its key (without it AWS fails the instance with `Client.InternalError`).
    pub fn attach(&mut self, role: &RoleArn, volume: &Resource, instance: &Resource, kept: bool) -> Resource {
        let attachment = Resource::Attachment {
            volume: Box::new(volume.clone()),
            instance: Box::new(instance.clone()),
        };
        let actor = Actor::Role(role.clone());
        let step = self
            .step(&actor, volume.region(), "ec2:AttachVolume", attachment.clone(), "attach the volume")
            .creating(vec![attachment.clone()], kept)
            .using_key(volume.key(), KeyUse::Ebs, "AttachVolume has EBS use the volume's key for the instance, through a grant the caller creates.");
        let undo = vec![self.step(
            &actor,
            volume.region(),
            "ec2:DetachVolume",
            attachment.clone(),
            "detach the volume",
        )];
        self.push(step, undo);
        attachment
    }

    // ---- workers ----------------------------------------------------------------------------

    /// Deploys one worker for `serves` in `account`/`region` (seeds: "worker deployment
    /// options"). In the backup account, `deployer` is the worker deployment role, which
    /// creates a temporary role and instance profile removed at the end; in a production
    /// account, `deployer` is the backup or restore role, and the account's pre-configured
    /// worker role is attached and kept.
    pub fn deploy_worker(
        &mut self,
        placement: Placement,
        deployer: &RoleArn,
        region: &Region,
        serves: &Instance,
    ) -> Result<Worker, Refusal> {
        let account = deployer.account().clone();
        let p = self.estate.partition();
        let actor = Actor::Role(deployer.clone());
        let serves_id = serves.id.clone();
        let identity = match placement {
            Placement::BackupAccount => {
                let temp_role = RoleArn::new(p, &account, &format!("{NAME_PREFIX}/worker-{serves_id}"));
                let role = Resource::TemporaryRole {
                    account: account.clone(),
                    serves: serves_id.clone(),
                };
                let policy = Resource::TemporaryRolePolicy {
                    account: account.clone(),
                    serves: serves_id.clone(),
                };
                let profile = Resource::InstanceProfile {
                    account: account.clone(),
                    serves: serves_id.clone(),
                };
                let membership = Resource::ProfileMembership {
                    account: account.clone(),
                    serves: serves_id.clone(),
                };
                let iam = [
                    (
                        "iam:CreateRole",
                        &role,
                        "a temporary role for the worker, trusted by ec2.amazonaws.com",
                        "iam:DeleteRole",
                    ),
                    (
                        "iam:PutRolePolicy",
                        &policy,
                        "give the temporary role the worker permissions (`bulwark policy worker-role`)",
                        "iam:DeleteRolePolicy",
                    ),
                    (
                        "iam:CreateInstanceProfile",
                        &profile,
                        "an instance profile, the only way a role reaches an EC2 instance",
                        "iam:DeleteInstanceProfile",
                    ),
                    (
                        "iam:AddRoleToInstanceProfile",
                        &membership,
                        "put the temporary role in the instance profile",
                        "iam:RemoveRoleFromInstanceProfile",
                    ),
                ];
                for (action, resource, why, undo_action) in iam {
                    let step = self
                        .step(&actor, None, action, resource.clone(), why)
                        .creating(vec![resource.clone()], false);
                    let undo = self.step(
                        &actor,
                        None,
                        undo_action,
                        resource.clone(),
                        "the temporary worker role lives only as long as the session",
                    );
                    self.push(step, vec![undo]);
                }
                Actor::Worker(temp_role)
            }
            Placement::ProductionAccount => {
                let worker_role = self
                    .estate
                    .account(&account)
                    .and_then(|a| a.worker_role.clone())
                    .ok_or_else(|| {
                        Refusal::new(
                            RefusalCode::WorkerRoleNotConfigured,
                            format!("workers in account {account} need its pre-configured worker role, and the estate defines none"),
                            format!(
                                "create the role with `bulwark policy worker-role` (permissions) and `bulwark policy \
                                 worker-role --trust`, put it in an instance profile, and add worker_role = \
                                 \"arn:aws:iam::{account}:role/NAME\" to the [[account]] with id = \"{account}\""
                            ),
                        )
                    })?;
                Actor::Worker(worker_role)
            }
        };
        let worker_role = identity.role().cloned().unwrap_or_else(|| deployer.clone());

        let queue = self.session_queue(region, &identity);
        let worker = Resource::Worker {
            account: account.clone(),
            region: region.clone(),
            serves: serves_id.clone(),
        };
        let role_words = match placement {
            Placement::BackupAccount => "the temporary role, through its instance profile; IAM is eventually consistent, so a fresh profile may be refused for some seconds and the launch is retried",
            Placement::ProductionAccount => "the account's worker role, through its instance profile; the role is not removed afterwards",
        };
        let run = self
            .step(
                &actor,
                Some(region),
                "ec2:RunInstances",
                worker.clone(),
                format!("launch one worker for {serves_id} in {account}/{region} with {role_words}"),
            )
            .creating(vec![worker.clone()], false)
            .also("iam:PassRole", vec![worker_role.to_string()])
            .also(
                "ec2:RunInstances",
                run_instances_resources(p.as_str(), &account, region),
            )
            .also("ec2:CreateTags", worker.iam_resources(p))
            .also("ec2:DescribeInstances", vec!["*".into()]);
        let terminate = self.step(
            &actor,
            Some(region),
            "ec2:TerminateInstances",
            worker.clone(),
            "workers live only as long as the session",
        );
        self.push(run, vec![terminate]);
        Ok(Worker {
            instance: worker,
            identity,
            queue,
        })
    }

    /// Creates the session queue in the backup account, in the workers' region, and lets the
    /// worker role use it (a queue policy, needed when the worker is in another account).
    fn session_queue(&mut self, region: &Region, worker: &Actor) -> Resource {
        let queue = Resource::Queue {
            account: self.estate.appliance.account.clone(),
            region: region.clone(),
        };
        let appliance = Actor::Appliance;
        let create = self
            .step(&appliance, Some(region), "sqs:CreateQueue", queue.clone(), "the session's queue, over which the appliance sends tasks to the worker and receives its progress")
            .creating(vec![queue.clone()], false);
        let delete = self.step(
            &appliance,
            Some(region),
            "sqs:DeleteQueue",
            queue.clone(),
            "the queue lives only as long as the session",
        );
        self.push(create, vec![delete]);
        let worker_arn = worker.role().map_or_else(String::new, ToString::to_string);
        let allow = self.step(
            &appliance,
            Some(region),
            "sqs:SetQueueAttributes",
            queue.clone(),
            format!("a queue policy that lets the worker's role {worker_arn} send and receive messages"),
        );
        self.push(allow, Vec::new());
        queue
    }

    /// The worker moves data between its attached volumes and the repository. The appliance
    /// assumes the repository role and passes its short-lived credentials to the worker over
    /// the queue: the worker role itself has no S3 permission (seeds: worker IAM role
    /// permissions), so a worker can never reach the repository outside a session.
    pub fn transfer(&mut self, worker: &Worker, repository: &Repository, write: bool, volumes: &[Resource]) {
        let queue_region = worker.queue.region().cloned();
        let appliance = Actor::Appliance;
        let repo_actor = Actor::Role(repository.role.clone());
        let repo = Resource::Repository {
            bucket: repository.bucket.clone(),
            prefix: repository.prefix.clone(),
        };
        let p = self.estate.partition();
        let names: Vec<String> = volumes.iter().map(ToString::to_string).collect();
        let task = if write {
            format!("read {} and store the blocks in the repository", names.join(", "))
        } else {
            format!("write the restore point into {}", names.join(", "))
        };
        let send = self.step(
            &appliance,
            queue_region.as_ref(),
            "sqs:SendMessage",
            worker.queue.clone(),
            format!("send the worker its task, with the repository role's session credentials: {task}"),
        );
        self.push(send, Vec::new());
        let receive = self.step(
            &worker.identity,
            queue_region.as_ref(),
            "sqs:ReceiveMessage",
            worker.queue.clone(),
            "the worker takes its task from the session queue",
        );
        self.push(receive, Vec::new());
        let (action, why) = if write {
            ("s3:PutObject", "the worker stores the new blocks, compressed and encrypted, in packs, then the index and the restore point's manifest")
        } else {
            (
                "s3:GetObject",
                "the worker reads the restore point's manifest, the index and the packs it needs",
            )
        };
        let mut data = self
            .step(&repo_actor, Some(&repository.region), action, repo.clone(), why)
            .also("s3:ListBucket", vec![repo.iam_resources(p)[0].clone()]);
        if write {
            // Deduplication reads the index before writing; a backup reads nothing else.
            data = data.also("s3:GetObject", vec![repo.iam_resources(p)[1].clone()]);
        }
        self.push(data, Vec::new());
        let report = self.step(
            &worker.identity,
            queue_region.as_ref(),
            "sqs:SendMessage",
            worker.queue.clone(),
            "the worker reports progress and its result",
        );
        self.push(report, Vec::new());
        let follow = self.step(
            &appliance,
            queue_region.as_ref(),
            "sqs:ReceiveMessage",
            worker.queue.clone(),
            "the appliance follows the worker's progress",
        );
        self.push(follow, Vec::new());
    }

    /// Launches the restored instance and attaches its restored volumes, which it keeps.
    pub fn launch_restored(
        &mut self,
        role: &RoleArn,
        region: &Region,
        from: &Instance,
        volumes: &[Resource],
    ) {
        let p = self.estate.partition();
        let account = role.account();
        let instance = Resource::RestoredInstance {
            account: account.clone(),
            region: region.clone(),
            from: from.id.clone(),
        };
        let actor = Actor::Role(role.clone());
        let run = self
            .step(&actor, Some(region), "ec2:RunInstances", instance.clone(), format!("launch the restored instance of {} in {account}/{region}, then attach its restored volumes", from.id))
            .creating(vec![instance.clone()], true)
            .also("ec2:RunInstances", run_instances_resources(p.as_str(), account, region))
            .also("ec2:CreateTags", instance.iam_resources(p))
            .also("ec2:DescribeInstances", vec!["*".into()]);
        let terminate = self.step(
            &actor,
            Some(region),
            "ec2:TerminateInstances",
            instance.clone(),
            "the restore failed: remove the half-restored instance",
        );
        self.push(run, vec![terminate]);
        for volume in volumes {
            self.attach(role, volume, &instance, true);
        }
    }
}

/// The resources RunInstances authorizes besides the instance: its network interface,
/// subnet, security group, image and root volume, scoped to the account and region.
fn run_instances_resources(p: &str, account: &AccountId, region: &Region) -> Vec<String> {
    ["network-interface", "subnet", "security-group", "volume"]
        .iter()
        .map(|kind| format!("arn:{p}:ec2:{region}:{account}:{kind}/*"))
        .chain(std::iter::once(format!("arn:{p}:ec2:{region}::image/*")))
        .collect()
}
