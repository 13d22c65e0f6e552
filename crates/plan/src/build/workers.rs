//! Deploying workers, their session queue, their transfers to and from the repository, and
//! the restored instance.

use bulwark_model::{AccountId, Action, Estate, Instance, Region, Repository, RoleArn};

use super::{Builder, Worker};
use crate::operation::{Launch, WorkerAccount};
use crate::refusal::{Refusal, RefusalCode};
use crate::resource::{
    Machine, NewVolume, QueueRef, RepositoryRef, Resource, RestoredRef, Snapshot, WorkerIdentity, WorkerRef,
    NAME_PREFIX,
};
use crate::step::{Actor, Call, DataPath, KeyUse, Removal};

const QUEUE_WHY: &str =
    "the session's queue, over which the appliance sends tasks to the worker and receives its progress";

impl Builder<'_> {
    /// Deploys one worker for `serves` in `account`/`region` (seeds: "worker deployment
    /// options"). In the backup account, `deployer` is the worker deployment role, which
    /// creates a temporary role and instance profile removed at the end; in a production
    /// account, `deployer` is the backup or restore role, and the account's pre-configured
    /// worker role is attached and kept.
    pub fn deploy_worker(
        &mut self,
        placement: WorkerAccount,
        deployer: &RoleArn,
        region: &Region,
        serves: &Instance,
    ) -> Result<Worker, Refusal> {
        let account = deployer.account().clone();
        let p = self.estate.partition();
        let actor = Actor::Role(deployer.clone());
        let serves_id = serves.id.clone();
        let identity = match placement {
            WorkerAccount::Backup => {
                // Named per session by the engine (`worker-SESSION-INSTANCE`), so that sessions
                // never share one; policies name them all by the `bulwark/` path.
                let temp_role =
                    RoleArn::new(p, &account, &format!("{NAME_PREFIX}/worker-SESSION-{serves_id}"));
                let identity = WorkerIdentity {
                    account: account.clone(),
                    serves: serves_id.clone(),
                };
                let id = || identity.clone();
                let iam = [
                    (
                        Call::CreateWorkerRole { identity: id() },
                        "a temporary role for the worker, trusted by ec2.amazonaws.com",
                        Removal::DeleteRole { identity: id() },
                    ),
                    (
                        Call::PutWorkerRolePolicy { identity: id() },
                        "give the temporary role the worker permissions (`bulwark policy worker-role`)",
                        Removal::DeleteRolePolicy { identity: id() },
                    ),
                    (
                        Call::CreateWorkerProfile { identity: id() },
                        "an instance profile, the only way a role reaches an EC2 instance",
                        Removal::DeleteInstanceProfile { identity: id() },
                    ),
                    (
                        Call::AddWorkerRoleToProfile { identity: id() },
                        "put the temporary role in the instance profile",
                        Removal::RemoveRoleFromProfile { identity: id() },
                    ),
                ];
                for (call, why, removal) in iam {
                    let step = self.step(&actor, None, call, why);
                    let undo = self.step(
                        &actor,
                        None,
                        Call::Remove { removal },
                        "the temporary worker role lives only as long as the session",
                    );
                    self.push(step, vec![undo]);
                }
                Actor::Worker(temp_role)
            }
            WorkerAccount::Production => {
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
        let passed = match placement {
            WorkerAccount::Backup => Resource::TemporaryRole(WorkerIdentity {
                account: account.clone(),
                serves: serves_id.clone(),
            })
            .iam_resources(p),
            WorkerAccount::Production => vec![identity.role().unwrap_or(deployer).to_string()],
        };

        let queue = self.session_queue(region, &identity);
        let worker = WorkerRef {
            account: account.clone(),
            region: region.clone(),
            serves: serves_id.clone(),
        };
        let worker_resource = Resource::Worker(worker.clone());
        let instance_type = worker_instance_type(self.estate, &account, region, serves);
        let network = match self
            .estate
            .worker_settings(&account, region)
            .and_then(|w| w.subnet.as_ref())
        {
            Some(subnet) => format!(" in subnet {subnet}"),
            None => " in the default VPC".to_owned(),
        };
        let role_words = match placement {
            WorkerAccount::Backup => "the temporary role, through its instance profile; IAM is eventually consistent, so a fresh profile may be refused for some seconds and the launch is retried",
            WorkerAccount::Production => "the account's worker role, through its instance profile; the role is not removed afterwards",
        };
        let run = self
            .step(
                &actor,
                Some(region),
                Call::LaunchWorker { worker: worker.clone() },
                format!(
                    "launch one {instance_type} worker for {serves_id} in {account}/{region}{network}, with {role_words}"
                ),
            )
            .also(Action::IamPassRole, passed)
            .also(
                Action::Ec2RunInstances,
                run_instances_resources(p.as_str(), &account, region),
            )
            .also(Action::Ec2CreateTags, worker_resource.iam_resources(p))
            .also(Action::Ec2DescribeInstances, vec!["*".into()]);
        let terminate = self.terminate(
            &actor,
            region,
            Machine::Worker(worker.clone()),
            "workers live only as long as the session; wait until it is terminated",
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
    /// The step that terminates `machine` and waits until it is gone.
    fn terminate(&self, actor: &Actor, region: &Region, machine: Machine, why: &str) -> crate::Step {
        self.step(
            actor,
            Some(region),
            Call::Remove {
                removal: Removal::Terminate { instance: machine },
            },
            why,
        )
        .also(Action::Ec2DescribeInstances, vec!["*".into()])
    }

    fn session_queue(&mut self, region: &Region, worker: &Actor) -> QueueRef {
        let queue = QueueRef {
            account: self.estate.appliance.account.clone(),
            region: region.clone(),
        };
        let appliance = Actor::Appliance;
        let create = self.step(
            &appliance,
            Some(region),
            Call::CreateQueue { queue: queue.clone() },
            QUEUE_WHY,
        );
        let delete = self.step(
            &appliance,
            Some(region),
            Call::Remove {
                removal: Removal::DeleteQueue { queue: queue.clone() },
            },
            "the queue lives only as long as the session",
        );
        self.push(create, vec![delete]);
        let worker_arn = worker.role().map_or_else(String::new, ToString::to_string);
        let allow = self.step(
            &appliance,
            Some(region),
            Call::SetQueuePolicy { queue: queue.clone() },
            format!("a queue policy that lets the worker's role {worker_arn} send and receive messages"),
        );
        self.push(allow, Vec::new());
        queue
    }

    /// The worker moves data between its attached volumes and the repository. The appliance
    /// assumes the repository role and passes its short-lived credentials to the worker over
    /// the queue: the worker role itself has no S3 permission (seeds: worker IAM role
    /// permissions), so a worker can never reach the repository outside a session.
    pub fn transfer(&mut self, worker: &Worker, repository: &Repository, write: bool, volumes: &[NewVolume]) {
        let queue_region = Some(worker.queue.region.clone());
        let appliance = Actor::Appliance;
        let p = self.estate.partition();
        let names: Vec<String> = volumes
            .iter()
            .map(|v| Resource::Volume(v.clone()).to_string())
            .collect();
        let task = if write {
            format!("read {} and store the blocks in the repository", names.join(", "))
        } else {
            format!("write the restore point into {}", names.join(", "))
        };
        // The credentials go with the task, so the role is assumed before it is sent.
        self.assume(&repository.role);
        let queue = || worker.queue.clone();
        let send = self.step(
            &appliance,
            queue_region.as_ref(),
            Call::SendTask { queue: queue() },
            format!("send the worker its task, with the repository role's session credentials: {task}"),
        );
        self.push(send, Vec::new());
        let receive = self.step(
            &worker.identity,
            queue_region.as_ref(),
            Call::WorkerTakesTask { queue: queue() },
            "the worker takes its task from the session queue",
        );
        self.push(receive, Vec::new());
        let why = if write {
            "the worker stores the new blocks, compressed and encrypted, in packs, then the index and the restore point's manifest"
        } else {
            "the worker reads the restore point's manifest, the index and the packs it needs"
        };
        self.repository_access(repository, write, DataPath::Worker, why);
        let report = self.step(
            &worker.identity,
            queue_region.as_ref(),
            Call::WorkerReports { queue: queue() },
            "the worker reports progress and its result",
        );
        self.push(report, Vec::new());
        let follow = self
            .step(
                &appliance,
                queue_region.as_ref(),
                Call::FollowWorker { queue: queue() },
                "the appliance follows the worker's progress",
            )
            .also(
                Action::SqsDeleteMessage,
                Resource::Queue(queue()).iam_resources(p),
            );
        self.push(follow, Vec::new());
    }

    /// The repository role's use of the repository: writing a backup (`write`) or reading a
    /// restore point. Made by a worker, or by the appliance itself without workers, with the
    /// role's session credentials.
    pub fn repository_access(&mut self, repository: &Repository, write: bool, by: DataPath, why: &str) {
        let p = self.estate.partition();
        let reference = RepositoryRef {
            bucket: repository.bucket.clone(),
            prefix: repository.prefix.clone(),
        };
        let repo = Resource::Repository(reference.clone());
        let call = if write {
            Call::WriteBackup {
                repository: reference,
                by,
            }
        } else {
            Call::ReadBackup {
                repository: reference,
                by,
            }
        };
        let mut data = self
            .step(
                &Actor::Role(repository.role.clone()),
                Some(&repository.region),
                call,
                why,
            )
            .also(Action::S3ListBucket, vec![repo.iam_resources(p)[0].clone()]);
        if write {
            // Deduplication reads the index before writing; a backup reads nothing else.
            data = data.also(Action::S3GetObject, vec![repo.iam_resources(p)[1].clone()]);
        }
        // Both take a repository lock (docs/repository-format.md, "Locks") and remove it at the end.
        let locks = match repository.prefix.as_str() {
            "" => format!("arn:{}:s3:::{}/locks/*", p.as_str(), repository.bucket),
            prefix => format!("arn:{}:s3:::{}/{prefix}/locks/*", p.as_str(), repository.bucket),
        };
        if !write {
            data = data.also(Action::S3PutObject, vec![locks.clone()]);
        }
        data = data.also(Action::S3DeleteObject, vec![locks]);
        self.push(data, Vec::new());
    }

    /// Launches the restored instance so that it boots as the original did: snapshots its
    /// restored volumes, registers an image of them (with the architecture, boot mode, root
    /// device and block device mappings the restore point recorded, which the engine reads;
    /// the root is the first volume), launches the instance from it (EC2 makes its volumes
    /// from the image, in the instance's zone, at their original devices), then removes the
    /// image, its snapshots and the restored volumes they were taken of. Stops it if asked.
    pub fn launch_restored(
        &mut self,
        role: &RoleArn,
        region: &Region,
        from: &Instance,
        volumes: &[NewVolume],
        launch: &Launch,
    ) {
        let p = self.estate.partition();
        let account = role.account();
        let instance = RestoredRef {
            account: account.clone(),
            region: region.clone(),
            from: from.id.clone(),
        };
        let actor = Actor::Role(role.clone());

        let snapshots: Vec<Snapshot> = volumes.iter().map(|v| self.snapshot_for_image(role, v)).collect();
        let image = Resource::Image(instance.clone());
        let snapshot_arns = format!("arn:{}:ec2:{region}::snapshot/*", p.as_str());
        let register = self
            .step(
                &actor,
                Some(region),
                Call::RegisterImage {
                    image: instance.clone(),
                    snapshots: snapshots.clone(),
                },
                format!(
                    "register a temporary image of the snapshots, with the architecture, boot mode, root \
                     device and block device mappings {} had when its restore point was made",
                    from.id
                ),
            )
            .also(
                Action::Ec2RegisterImage,
                image
                    .iam_resources(p)
                    .into_iter()
                    .chain([snapshot_arns.clone()])
                    .collect(),
            )
            .also(Action::Ec2CreateTags, image.iam_resources(p))
            .also(Action::Ec2DescribeImages, vec!["*".into()]);
        let deregister = self.step(
            &actor,
            Some(region),
            Call::Remove {
                removal: Removal::DeregisterImage {
                    image: instance.clone(),
                },
            },
            "remove the temporary image: the instance was launched from it, or the session failed",
        );
        self.push(register, vec![deregister]);

        let same_place = account == &from.account && region == &from.region;
        let network = match (&launch.subnet, same_place) {
            (Some(subnet), _) if launch.security_groups.is_empty() => {
                format!("in subnet {subnet} with its VPC's default security group")
            }
            (Some(subnet), _) => format!("in subnet {subnet} with {}", launch.security_groups.join(", ")),
            (None, true) => "in the original's subnet and security groups".to_owned(),
            (None, false) => format!(
                "in the default VPC of {account}/{region} with its default security group (the original's \
                 network does not exist there; give a subnet and security groups to choose)"
            ),
        };
        let why = format!(
            "launch the restored instance of {} from the image, with its original type, tags and key pair \
             (the key pair only in its own account and region), {network}; EC2 makes its volumes from \
             the image's snapshots",
            from.id
        );
        let resource = Resource::RestoredInstance(instance.clone());
        let mut run = self
            .step(
                &actor,
                Some(region),
                Call::LaunchRestoredInstance {
                    instance: instance.clone(),
                },
                why,
            )
            .kept(true);
        for s in &snapshots {
            run = run.using_key(
                s.key.as_ref(),
                KeyUse::Ebs,
                "RunInstances makes the instance's volumes from the image's snapshots under their key, which \
                 EBS uses for the instance through a grant the caller creates.",
            );
        }
        let run = run
            .also(
                Action::Ec2RunInstances,
                run_instances_resources(p.as_str(), account, region)
                    .into_iter()
                    .chain([
                        snapshot_arns,
                        format!("arn:{}:ec2:{region}:{account}:key-pair/*", p.as_str()),
                    ])
                    .collect(),
            )
            .also(Action::Ec2CreateTags, resource.iam_resources(p))
            .also(Action::Ec2DescribeInstances, vec!["*".into()])
            .also(Action::Ec2DescribeVolumes, vec!["*".into()]);
        let terminate = self.terminate(
            &actor,
            region,
            Machine::Restored(instance.clone()),
            "the restore failed: remove the half-restored instance and wait until it is terminated (with \
             the volumes its launch made)",
        );
        self.push(run, vec![terminate]);
        // What only served the launch.
        self.release(&image);
        for (snapshot, volume) in snapshots.into_iter().zip(volumes) {
            self.release(&Resource::Snapshot(snapshot));
            self.release(&Resource::Volume(volume.clone()));
        }
        let keep = self
            .step(
                &actor,
                Some(region),
                Call::KeepVolumesAsTheyWere {
                    instance: instance.clone(),
                },
                "give each volume of the restored instance the delete-on-termination setting the original's \
                 had (until now all are deleted with it, so that a failed restore leaves none behind)",
            )
            .also(Action::Ec2ModifyInstanceAttribute, resource.iam_resources(p));
        self.push(keep, Vec::new());
        if launch.stopped {
            let stop = self
                .step(
                    &actor,
                    Some(region),
                    Call::StopRestoredInstance { instance },
                    "leave the restored instance stopped, as asked",
                )
                .also(Action::Ec2StopInstances, resource.iam_resources(p));
            self.push(stop, Vec::new());
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

/// EBS-optimized c6i sizes and their baseline EBS bandwidth in MB/s (the EC2 user guide's
/// "Amazon EBS-optimized instance types"), smallest first.
const WORKER_SIZES: &[(&str, u64)] = &[
    ("c6i.large", 81),
    ("c6i.xlarge", 156),
    ("c6i.2xlarge", 312),
    ("c6i.4xlarge", 625),
    ("c6i.8xlarge", 1250),
];

/// The instance type of the worker that serves `serves` in `account`/`region`: the estate's
/// (`[workers."ACCOUNT/REGION"] instance_type`), else the smallest c6i whose baseline EBS
/// bandwidth moves all of the instance's volumes within about an hour (more cores compress
/// faster too), and the largest listed beyond.
pub fn worker_instance_type(
    estate: &Estate,
    account: &AccountId,
    region: &Region,
    serves: &Instance,
) -> String {
    if let Some(t) = estate
        .worker_settings(account, region)
        .and_then(|w| w.instance_type.as_ref())
    {
        return t.clone();
    }
    let bytes: u64 = serves.volumes.iter().map(|v| u64::from(v.size_gib) << 30).sum();
    let hour = 3600 * 1_000_000;
    WORKER_SIZES
        .iter()
        .find(|(_, mb_per_second)| bytes <= mb_per_second * hour)
        .or(WORKER_SIZES.last())
        .map_or_else(|| "c6i.large".to_owned(), |(t, _)| (*t).to_owned())
}
