//! The plan builder: the sequences every operation shares (take snapshots, share one, copy
//! one, create a volume, deploy a worker, move data through the repository), each written
//! once with its rule. Every step that creates something temporary registers its undo, and
//! the cleanup is the undos in reverse order, so nothing a plan creates can be forgotten.

mod direct;
mod snapshots;
mod volumes;
mod workers;

use std::collections::BTreeSet;

use bulwark_model::{AccountId, Action, Estate, KeyRef, Region, Repository, RoleArn};

use crate::operation::Operation;
use crate::refusal::{Refusal, RefusalCode};
use crate::resource::{QueueRef, Resource, WorkerRef};
use crate::step::{key_grants, Actor, Call, KeyNeed, KeyUse, Permission, Plan, Step};

pub(crate) use snapshots::SnapshotPurpose;
pub use workers::worker_instance_type;

impl Step {
    /// Whether what the step creates outlives the session.
    pub(crate) fn kept(mut self, kept: bool) -> Self {
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
    pub(crate) fn also(mut self, action: Action, resources: Vec<String>) -> Self {
        for resource in resources {
            self.also.push(Permission { action, resource });
        }
        self
    }
}

/// A worker as deployed by [`Builder::deploy_worker`].
pub(crate) struct Worker {
    /// The worker instance.
    pub instance: WorkerRef,
    /// The role attached to it.
    pub identity: Actor,
    /// The session queue it listens on.
    pub queue: QueueRef,
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
    pub fn step(&self, actor: &Actor, region: Option<&Region>, call: Call, why: impl Into<String>) -> Step {
        let account = actor
            .role()
            .map_or(&self.estate.appliance.account, RoleArn::account)
            .clone();
        Step {
            actor: actor.clone(),
            account,
            region: region.cloned(),
            call,
            why: why.into(),
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
            self.assume(role);
        }
        let kept = step.kept;
        self.steps.push(step);
        if kept {
            self.rollback.extend(undo);
        } else {
            self.undo.extend(undo);
        }
    }

    /// Moves the removal of `resource` into the main steps: the operation itself removes it
    /// (a restored volume detached from the worker before it joins the restored instance; a
    /// restored root volume once the instance booted from its image has its own).
    /// A kept resource's removal stays in the rollback too: a session that fails before the
    /// release removes it there.
    pub fn release(&mut self, resource: &Resource) {
        if let Some(i) = self.undo.iter().rposition(|s| &s.resource() == resource) {
            let step = self.undo.remove(i);
            self.steps.push(step);
        } else if let Some(step) = self.rollback.iter().rev().find(|s| &s.resource() == resource) {
            self.steps.push(step.clone());
        }
    }

    /// The appliance assumes `role`, unless it already has.
    pub fn assume(&mut self, role: &RoleArn) {
        if self.assumed.insert(role.clone()) {
            let assume = self.assume_step(role);
            self.steps.push(assume);
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
            Call::AssumeRole { role: role.clone() },
            format!(
                "the appliance acts in account {} through this role{external}; the role's trust \
                 policy must name the appliance and the appliance's policy must allow the call",
                role.account()
            ),
        )
    }

    pub fn finish(mut self, operation: Operation, summary: String) -> Result<Plan, Refusal> {
        let mut cleanup = std::mem::take(&mut self.undo);
        cleanup.reverse();
        let mut rollback = std::mem::take(&mut self.rollback);
        rollback.reverse();
        self.prove_cleanup(&cleanup, &rollback);
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

    /// Each role that removes something at cleanup or rollback (or during the operation) first
    /// proves it may: it simulates its own IAM policies on every removal it will make, right
    /// after it is assumed and before anything is created. A session that could not clean up
    /// is refused before it makes anything.
    fn prove_cleanup(&mut self, cleanup: &[Step], rollback: &[Step]) {
        let removers: BTreeSet<RoleArn> = cleanup
            .iter()
            .chain(rollback)
            .chain(
                self.steps
                    .iter()
                    .filter(|s| matches!(s.call, Call::Remove { .. })),
            )
            .filter_map(|s| match &s.actor {
                Actor::Role(role) => Some(role.clone()),
                _ => None,
            })
            .collect();
        for role in removers {
            let proof = self.step(
                &Actor::Role(role.clone()),
                None,
                Call::ProveCleanup { role: role.clone() },
                "prove, before anything is created, that this role may remove what the session will \
                 create (its IAM policies simulated on every removal; the simulator sees neither key \
                 policies nor service control policies)",
            );
            let first_creation = self
                .steps
                .iter()
                .position(|s| !s.creates().is_empty())
                .unwrap_or(self.steps.len());
            let assumed = self
                .steps
                .iter()
                .position(|s| matches!(&s.call, Call::AssumeRole { role: r } if *r == role));
            // A role first assumed after something was created is assumed earlier instead, so
            // that its proof comes before the first creation.
            let at = match assumed {
                Some(i) if i < first_creation => i + 1,
                Some(i) => {
                    let assume = self.steps.remove(i);
                    self.steps.insert(first_creation, assume);
                    first_creation + 1
                }
                None => {
                    let assume = self.assume_step(&role);
                    self.steps.insert(first_creation, assume);
                    first_creation + 1
                }
            };
            self.steps.insert(at, proof);
        }
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
}
