//! Discovery: what runs in one account and region, as the account's backup role sees it. The
//! instances (with their tags, state and volumes: size, key, device), and the region's EBS
//! encryption defaults, so that nobody types them into an estate file. The appliance runs it on
//! a schedule and on demand; the planner then takes its facts from what was found.
//!
//! Also each instance's type, subnet and security groups, which a restore of the instance as it
//! was needs. The backup role needs read-only permissions for it ([`bulwark_plan::DISCOVERY_ACTIONS`]).
//! An account that cannot be read is reported with the failing call and the fix, in the words
//! of `bulwark check`, and the rest of the estate is still discovered.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_cloud::{Credentials, KeyManager};
use bulwark_model::{AccountId, Action, Instance, KeyRef, Region, Volume};
use serde::{Deserialize, Serialize};

use crate::check::Finding;
use crate::retry::Gave;
use crate::Engine;

/// An instance as discovery found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// The instance, as the planner takes it.
    pub instance: Instance,
    /// `pending`, `running`, `stopping`, `stopped`.
    pub state: String,
    /// Its availability zone, when known.
    pub availability_zone: Option<String>,
    /// How each volume is attached and performs, in the order of `instance.volumes`.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Its type, subnet and security groups.
    #[serde(default)]
    pub setup: bulwark_cloud::InstanceSetup,
}

/// What discovery knows of a volume beyond what the planner takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Its device name on the instance.
    pub device: String,
    /// Its type, IOPS and throughput (`None`: a type Bulwark does not know).
    pub performance: Option<bulwark_model::Performance>,
}

/// What discovery found in one account and region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// The instances, terminated ones left out.
    pub instances: Vec<Discovered>,
    /// The region's default EBS key when it is a customer managed key (`None`: `aws/ebs`).
    pub default_key: Option<KeyRef>,
    /// Whether EBS encryption by default is on.
    pub encryption_by_default: bool,
}

impl Engine {
    /// Discovers `account` in `region` through the account's backup role; a failure is
    /// explained as `bulwark check` explains it (what failed, and the fix).
    pub fn discover(&self, account: &AccountId, region: &Region) -> Result<Discovery, Finding> {
        let Some(role) = self.estate.account(account).and_then(|a| a.backup_role.as_ref()) else {
            return Err(Finding {
                subject: account.to_string(),
                problem: "the account has no backup role, through which it is discovered".into(),
                fix: format!("give account {account} a backup_role"),
            });
        };
        let unreachable = |gave: Gave| {
            let e = gave.error();
            Finding {
                subject: role.to_string(),
                problem: format!("{} in {region} failed: {}: {}", e.action, e.code, e.message),
                fix: if e.action == Action::StsAssumeRole {
                    "make the role's trust policy name the appliance (external id included where the \
                 account has one), and let the appliance's identity call sts:AssumeRole on it"
                        .to_owned()
                } else {
                    format!(
                        "allow the backup role the read-only discovery actions ({}) on \"*\"; see \
                     `bulwark policy discovery`",
                        bulwark_plan::DISCOVERY_ACTIONS
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            }
        };
        let who = self
            .identities
            .role(role)
            .map_err(|e| unreachable(Gave::Refused(e)))?;
        let ec2 = &self.cloud.ec2;
        let default_key = self
            .retry
            .run(Action::Ec2GetEbsDefaultKmsKeyId, None, || {
                ec2.ebs_default_key(&who, region)
            })
            .map_err(unreachable)?;
        let encryption_by_default = self
            .retry
            .run(Action::Ec2GetEbsEncryptionByDefault, None, || {
                ec2.ebs_encryption_by_default(&who, region)
            })
            .map_err(unreachable)?;
        let found = self
            .retry
            .run(Action::Ec2DescribeInstances, None, || {
                ec2.instances_tagged(&who, region, &[])
            })
            .map_err(unreachable)?;
        let found: Vec<_> = found
            .into_iter()
            .filter(|i| !matches!(i.state.as_str(), "shutting-down" | "terminated"))
            .collect();
        let volume_ids: Vec<_> = found
            .iter()
            .flat_map(|i| i.volumes.iter().map(|(v, _)| v.clone()))
            .collect();
        let volumes = if volume_ids.is_empty() {
            Vec::new()
        } else {
            self.retry
                .run(Action::Ec2DescribeVolumes, None, || {
                    ec2.describe_volumes(&who, region, &volume_ids)
                })
                .map_err(unreachable)?
        };
        let volumes: BTreeMap<_, _> = volumes.into_iter().map(|v| (v.id.clone(), v)).collect();
        let keys = self.key_kinds(
            &who,
            account,
            region,
            volumes
                .values()
                .filter_map(|v| v.encryption.as_ref().map(|e| e.key_arn.clone()))
                .collect(),
        );
        let mut instances = Vec::new();
        for info in found {
            let mut planned = Vec::new();
            let mut disks = Vec::new();
            for (id, device) in &info.volumes {
                let Some(v) = volumes.get(id) else { continue };
                let key = v.encryption.as_ref().and_then(|e| keys.get(&e.key_arn).cloned());
                planned.push(Volume {
                    id: id.clone(),
                    size_gib: v.size_gib,
                    key,
                });
                disks.push(Disk {
                    device: device.clone(),
                    performance: v.performance,
                });
            }
            instances.push(Discovered {
                instance: Instance {
                    id: info.id,
                    account: account.clone(),
                    region: region.clone(),
                    volumes: planned,
                    tags: info.tags.into_iter().map(|t| (t.key, t.value)).collect(),
                },
                state: info.state,
                availability_zone: info.availability_zone,
                disks,
                setup: info.setup,
            });
        }
        instances.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
        let default_key = KeyRef::parse_in(&default_key, account, region)
            .ok()
            .filter(|k| !k.is_aws_managed());
        Ok(Discovery {
            instances,
            default_key,
            encryption_by_default,
        })
    }

    /// Each key ARN as a [`KeyRef`]: `aws/ebs` is told apart by `kms:DescribeKey` (its ARN
    /// looks like any key's). A key the role cannot describe is a customer managed one (an
    /// AWS managed key's policy lets its account's principals describe it).
    fn key_kinds(
        &self,
        who: &Credentials,
        account: &AccountId,
        region: &Region,
        arns: BTreeSet<String>,
    ) -> BTreeMap<String, KeyRef> {
        let kms = &self.cloud.kms;
        arns.into_iter()
            .filter_map(|arn| {
                let aws_managed = self
                    .retry
                    .run(Action::KmsDescribeKey, None, || {
                        kms.describe_key(who, region, &arn)
                    })
                    .is_ok_and(|info| info.manager == KeyManager::Aws);
                let key = if aws_managed {
                    KeyRef::AwsManaged {
                        account: account.clone(),
                        region: region.clone(),
                    }
                } else {
                    KeyRef::Customer(arn.parse().ok()?)
                };
                Some((arn, key))
            })
            .collect()
    }
}
