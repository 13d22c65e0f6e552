//! The EBS direct APIs, in the account that owns the snapshots: moving image data without
//! workers (the appliance reads snapshots, or writes new ones), and the lists of changed
//! blocks a worker's backup reads by.

use bulwark_model::{Action, Instance, KeyRef, Region, Repository, RoleArn};

use super::Builder;
use crate::resource::{Resource, Snapshot, SnapshotOrigin};
use crate::step::{Actor, Call, DataPath, KeyUse, Removal};

impl Builder<'_> {
    /// `role` (the owner of `snapshots`) reads their blocks through the EBS direct APIs and
    /// the appliance stores them in the repository, all volumes or none; then the cleanup
    /// removes the base snapshots of the previous backup, the new ones taking their place.
    pub fn read_direct(&mut self, role: &RoleArn, snapshots: &[Snapshot], repository: &Repository) {
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        // The repository role's credentials are needed first, to find the previous backup.
        self.assume(&repository.role);
        for snapshot in snapshots {
            let resource = Resource::Snapshot(snapshot.clone());
            let arns = resource.iam_resources(p);
            let step = self
                .step(
                    &actor,
                    Some(&snapshot.region),
                    Call::ReadSnapshotBlocks {
                        snapshot: snapshot.clone(),
                    },
                    "read the snapshot's blocks through the EBS direct APIs, each checked against its \
                     SHA-256: only those changed since the previous base snapshot (ListChangedBlocks) \
                     when it still exists and the volume's latest restore point was read from it, \
                     else every written block (ListSnapshotBlocks)",
                )
                .using_key(
                    snapshot.key.as_ref(),
                    KeyUse::DirectRead,
                    "The EBS direct APIs decrypt an encrypted snapshot's blocks for its reader.",
                )
                .also(Action::EbsListSnapshotBlocks, arns.clone())
                .also(Action::EbsListChangedBlocks, arns)
                .also(Action::Ec2DescribeSnapshots, vec!["*".into()]);
            let replace = self.replace_previous_base(&actor, snapshot);
            self.push(step, vec![replace]);
        }
        self.repository_access(
            repository,
            true,
            DataPath::Appliance,
            "the appliance stores the new blocks, compressed and encrypted, in packs, then the \
             index, then the restore points of all the volumes at once",
        );
    }

    /// `role` (the owner of `snapshots`) lists the blocks changed in each since the base
    /// snapshot of the volume's latest restore point (ListChangedBlocks), for the worker to
    /// read only those; then the cleanup removes those previous base snapshots, the new ones
    /// taking their place. A volume without a usable base is read in full, and the session
    /// says why.
    pub fn list_changes(&mut self, role: &RoleArn, snapshots: &[Snapshot], repository: &Repository) {
        let actor = Actor::Role(role.clone());
        // The repository role's credentials, to find the previous backup.
        self.assume(&repository.role);
        for snapshot in snapshots {
            let step = self
                .step(
                    &actor,
                    Some(&snapshot.region),
                    Call::ListChangedBlocks {
                        snapshot: snapshot.clone(),
                    },
                    "list the blocks changed since the previous base snapshot, when it still exists, is \
                     of the same size and the volume's latest restore point was read from it: the \
                     worker reads only those; else it reads the whole volume",
                )
                .using_key(
                    snapshot.key.as_ref(),
                    KeyUse::DirectRead,
                    "The EBS direct APIs list the blocks of an encrypted snapshot only for a caller \
                     that may decrypt it.",
                )
                .also(Action::Ec2DescribeSnapshots, vec!["*".into()]);
            let replace = self.replace_previous_base(&actor, snapshot);
            self.push(step, vec![replace]);
        }
    }

    /// The removal of the base snapshot of `snapshot`'s previous backup, which the engine hands
    /// to the cleanup once the new restore points are written, and only then: a failed backup
    /// keeps it as the base of the next.
    fn replace_previous_base(&self, actor: &Actor, snapshot: &Snapshot) -> crate::Step {
        let previous = Snapshot {
            origin: SnapshotOrigin::PreviousBase,
            ..snapshot.clone()
        };
        self.step(
            actor,
            Some(&snapshot.region),
            Call::Remove {
                removal: Removal::DeleteSnapshot { snapshot: previous },
            },
            "remove the base snapshot of the previous backup, if there is one, once the new restore \
             points are written: the new base snapshot replaces it",
        )
    }

    /// `role` writes the latest restore point of each volume of `instance` into a new snapshot
    /// of its account in `region`, encrypted with `keys` (one per volume, in order); the
    /// appliance reads the restore points from the repository. The new snapshots are removed
    /// at the end of the session: they are only the source of the restored volumes.
    pub fn write_direct(
        &mut self,
        role: &RoleArn,
        region: &Region,
        instance: &Instance,
        keys: &[Option<KeyRef>],
        repository: &Repository,
    ) -> Vec<Snapshot> {
        let p = self.estate.partition();
        let actor = Actor::Role(role.clone());
        self.assume(&repository.role);
        self.repository_access(
            repository,
            false,
            DataPath::Appliance,
            "the appliance reads the restore points' manifests, the index and the packs it needs",
        );
        let mut written = Vec::new();
        for (volume, key) in instance.volumes.iter().zip(keys) {
            let snapshot = Snapshot {
                owner: role.account().clone(),
                region: region.clone(),
                volume: volume.id.clone(),
                origin: SnapshotOrigin::Written,
                key: key.clone(),
            };
            let resource = Resource::Snapshot(snapshot.clone());
            let arns = resource.iam_resources(p);
            let encryption = match key {
                Some(k) => format!("encrypted with {k}"),
                None => "unencrypted, like the original volume".to_owned(),
            };
            let step = self
                .step(
                    &actor,
                    Some(region),
                    Call::WriteSnapshot {
                        snapshot: snapshot.clone(),
                    },
                    format!(
                        "start a new snapshot of the size of {}, {encryption}, put the restore \
                         point's blocks into it with their SHA-256 (PutSnapshotBlock), complete it \
                         with the linear checksum of them all (CompleteSnapshot) and wait until it \
                         is completed",
                        volume.id
                    ),
                )
                .using_key(
                    key.as_ref(),
                    KeyUse::DirectWrite,
                    "The EBS direct APIs encrypt the blocks of the snapshot they write.",
                )
                .also(Action::EbsPutSnapshotBlock, arns.clone())
                .also(Action::EbsCompleteSnapshot, arns)
                .also(Action::Ec2DescribeSnapshots, vec!["*".into()]);
            let undo = self.step(
                &actor,
                Some(region),
                Call::Remove {
                    removal: Removal::DeleteSnapshot {
                        snapshot: snapshot.clone(),
                    },
                },
                "remove the written snapshot: it is only the source of the restored volume",
            );
            self.push(step, vec![undo]);
            written.push(snapshot);
        }
        written
    }
}
