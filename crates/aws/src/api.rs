//! Every call of the cloud trait, as AWS SDK requests.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ec2::types::{
    CreateVolumePermission, CreateVolumePermissionModifications, IamInstanceProfileSpecification,
    InstanceSpecification, InstanceType, Placement, ResourceType, SnapshotAttributeName, TagSpecification,
};
use aws_sdk_kms::primitives::Blob;
use bulwark_cloud::{
    BlockPage, BlockRef, CallerIdentity, Cloud, CloudError, CopySnapshot, CreateVolume, Credentials,
    Encryption, Grant, InstanceInfo, KeyInfo, KeyManager, Message, Result, RoleInfo, RunInstance,
    SharedCredentials, SnapshotInfo, StartSnapshot, Tag, VolumeInfo,
};
use bulwark_model::{AccountId, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_storage::Backend;

use crate::errors::{map, missing, url_decode};
use crate::AwsCloud;

/// The SDK clients of one (credentials, region).
#[derive(Clone)]
pub(crate) struct Clients {
    ec2: aws_sdk_ec2::Client,
    ebs: aws_sdk_ebs::Client,
    kms: aws_sdk_kms::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub fn new(sdk: &SdkConfig, who: &Credentials, region: &str) -> Clients {
        let creds = aws_credential_types::Credentials::new(
            who.access_key_id.clone(),
            who.secret_access_key.clone(),
            who.session_token.clone(),
            None,
            "bulwark",
        );
        let region = aws_config::Region::new(region.to_owned());
        let conf = sdk
            .to_builder()
            .region(region)
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                creds,
            ))
            .build();
        Clients {
            ec2: aws_sdk_ec2::Client::new(&conf),
            ebs: aws_sdk_ebs::Client::new(&conf),
            kms: aws_sdk_kms::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            sts: aws_sdk_sts::Client::new(&conf),
            sqs: aws_sdk_sqs::Client::new(&conf),
        }
    }
}

// ---- conversions ------------------------------------------------------------------------------

fn ec2_tags(tags: &[Tag]) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|t| {
            aws_sdk_ec2::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
        })
        .collect()
}

fn tag_spec(kind: ResourceType, tags: &[Tag]) -> Option<Vec<TagSpecification>> {
    (!tags.is_empty()).then(|| {
        vec![TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(ec2_tags(tags)))
            .build()]
    })
}

fn from_ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Vec<Tag> {
    tags.iter()
        .map(|t| Tag::new(t.key().unwrap_or(""), t.value().unwrap_or("")))
        .collect()
}

fn parse<T: std::str::FromStr>(action: &str, what: &str, s: Option<&str>) -> Result<T> {
    let s = s.ok_or_else(|| missing(action, what))?;
    s.parse()
        .map_err(|_| CloudError::invalid(action, "MalformedResponse", format!("{what} {s:?} is not valid")))
}

fn encryption(encrypted: Option<bool>, key: Option<&str>) -> Option<Encryption> {
    encrypted.unwrap_or(false).then(|| Encryption {
        key_arn: key.unwrap_or("").to_owned(),
    })
}

/// The availability zone Bulwark places volumes and workers in: the region's first, unless
/// configured (per-region worker settings are later work).
fn zone(region: &Region) -> String {
    format!("{region}a")
}

/// The name of an instance profile from its ARN (`arn:aws:iam::A:instance-profile/path/NAME`).
fn profile_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl Cloud for AwsCloud {
    // ---- STS ------------------------------------------------------------------------------

    fn caller_identity(&self, who: &Credentials) -> Result<CallerIdentity> {
        let a = "sts:GetCallerIdentity";
        let c = self.clients(who, None);
        self.run(async {
            let out = c.sts.get_caller_identity().send().await.map_err(|e| map(a, e))?;
            Ok(CallerIdentity {
                account: parse(a, "account", out.account())?,
                arn: out.arn().ok_or_else(|| missing(a, "arn"))?.to_owned(),
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
        let a = "sts:AssumeRole";
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .sts
                .assume_role()
                .role_arn(role.as_str())
                .role_session_name(session_name)
                .set_external_id(external_id.map(str::to_owned))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let creds = out.credentials().ok_or_else(|| missing(a, "credentials"))?;
            Ok(Credentials {
                access_key_id: creds.access_key_id().to_owned(),
                secret_access_key: creds.secret_access_key().to_owned(),
                session_token: Some(creds.session_token().to_owned()),
            })
        })
    }

    // ---- EC2 ------------------------------------------------------------------------------

    fn describe_instances(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceInfo>> {
        let a = "ec2:DescribeInstances";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .describe_instances()
                .set_instance_ids(Some(ids.iter().map(ToString::to_string).collect()))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let mut infos = Vec::new();
            for r in out.reservations() {
                for i in r.instances() {
                    infos.push(InstanceInfo {
                        id: parse(a, "instance id", i.instance_id())?,
                        owner: parse(a, "owner", r.owner_id())?,
                        region: region.clone(),
                        state: i
                            .state()
                            .and_then(|s| s.name())
                            .map_or("pending", |n| n.as_str())
                            .to_owned(),
                        state_reason: i.state_reason().and_then(|s| s.message()).map(str::to_owned),
                        volumes: i
                            .block_device_mappings()
                            .iter()
                            .filter_map(|m| {
                                let v = m.ebs()?.volume_id()?.parse().ok()?;
                                Some((v, m.device_name()?.to_owned()))
                            })
                            .collect(),
                        instance_profile: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_owned),
                        availability_zone: i
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .map(str::to_owned),
                        tags: from_ec2_tags(i.tags()),
                    });
                }
            }
            Ok(infos)
        })
    }

    fn describe_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[VolumeId],
    ) -> Result<Vec<VolumeInfo>> {
        let a = "ec2:DescribeVolumes";
        let c = self.clients(who, Some(region));
        let owner = self.caller_identity(who)?.account;
        self.run(async {
            let out = c
                .ec2
                .describe_volumes()
                .set_volume_ids(Some(ids.iter().map(ToString::to_string).collect()))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.volumes()
                .iter()
                .map(|v| {
                    let attachment = v
                        .attachments()
                        .first()
                        .and_then(|at| Some((at.instance_id()?.parse().ok()?, at.device()?.to_owned())));
                    Ok(VolumeInfo {
                        id: parse(a, "volume id", v.volume_id())?,
                        owner: owner.clone(),
                        region: region.clone(),
                        size_gib: v.size().unwrap_or(0).max(0) as u32,
                        snapshot: v
                            .snapshot_id()
                            .filter(|s| !s.is_empty())
                            .and_then(|s| s.parse().ok()),
                        state: v.state().map_or("creating", |s| s.as_str()).to_owned(),
                        encryption: encryption(v.encrypted(), v.kms_key_id()),
                        attachment,
                        tags: from_ec2_tags(v.tags()),
                    })
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
        let a = "ec2:DescribeSnapshots";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .describe_snapshots()
                .set_snapshot_ids(Some(ids.iter().map(ToString::to_string).collect()))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.snapshots()
                .iter()
                .map(|s| {
                    Ok(SnapshotInfo {
                        id: parse(a, "snapshot id", s.snapshot_id())?,
                        owner: parse(a, "owner", s.owner_id())?,
                        region: region.clone(),
                        volume: s
                            .volume_id()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or_else(unknown_volume),
                        size_gib: s.volume_size().unwrap_or(0).max(0) as u32,
                        state: s.state().map_or("pending", |s| s.as_str()).to_owned(),
                        encryption: encryption(s.encrypted(), s.kms_key_id()),
                        shared_with: Vec::new(),
                        tags: from_ec2_tags(s.tags()),
                    })
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
        let a = "ec2:CreateSnapshots";
        let c = self.clients(who, Some(region));
        let owner = self.caller_identity(who)?.account;
        self.run(async {
            let out = c
                .ec2
                .create_snapshots()
                .instance_specification(
                    InstanceSpecification::builder()
                        .instance_id(instance.as_str())
                        .build(),
                )
                .set_tag_specifications(tag_spec(ResourceType::Snapshot, tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.snapshots()
                .iter()
                .map(|s| {
                    Ok(SnapshotInfo {
                        id: parse(a, "snapshot id", s.snapshot_id())?,
                        owner: s
                            .owner_id()
                            .and_then(|o| o.parse().ok())
                            .unwrap_or_else(|| owner.clone()),
                        region: region.clone(),
                        volume: parse(a, "volume id", s.volume_id())?,
                        size_gib: s.volume_size().unwrap_or(0).max(0) as u32,
                        state: s.state().map_or("pending", |s| s.as_str()).to_owned(),
                        encryption: encryption(s.encrypted(), None),
                        shared_with: Vec::new(),
                        tags: from_ec2_tags(s.tags()),
                    })
                })
                .collect()
        })
    }

    fn create_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        tags: &[Tag],
    ) -> Result<SnapshotInfo> {
        let a = "ec2:CreateSnapshot";
        let c = self.clients(who, Some(region));
        self.run(async {
            let s = c
                .ec2
                .create_snapshot()
                .volume_id(volume.as_str())
                .set_tag_specifications(tag_spec(ResourceType::Snapshot, tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(SnapshotInfo {
                id: parse(a, "snapshot id", s.snapshot_id())?,
                owner: parse(a, "owner", s.owner_id())?,
                region: region.clone(),
                volume: volume.clone(),
                size_gib: s.volume_size().unwrap_or(0).max(0) as u32,
                state: s.state().map_or("pending", |s| s.as_str()).to_owned(),
                encryption: encryption(s.encrypted(), s.kms_key_id()),
                shared_with: Vec::new(),
                tags: from_ec2_tags(s.tags()),
            })
        })
    }

    fn copy_snapshot(&self, who: &Credentials, region: &Region, copy: &CopySnapshot) -> Result<SnapshotId> {
        let a = "ec2:CopySnapshot";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .copy_snapshot()
                .source_region(copy.source_region.as_str())
                .source_snapshot_id(copy.source.as_str())
                .set_encrypted(copy.encrypted.then_some(true))
                .set_kms_key_id(copy.kms_key_id.clone())
                .set_tag_specifications(tag_spec(ResourceType::Snapshot, &copy.tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            parse(a, "snapshot id", out.snapshot_id())
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
        let a = "ec2:ModifySnapshotAttribute";
        let c = self.clients(who, Some(region));
        let permissions = |accounts: &[AccountId]| {
            (!accounts.is_empty()).then(|| {
                accounts
                    .iter()
                    .map(|acct| CreateVolumePermission::builder().user_id(acct.as_str()).build())
                    .collect()
            })
        };
        self.run(async {
            c.ec2
                .modify_snapshot_attribute()
                .snapshot_id(snapshot.as_str())
                .attribute(SnapshotAttributeName::CreateVolumePermission)
                .create_volume_permission(
                    CreateVolumePermissionModifications::builder()
                        .set_add(permissions(add))
                        .set_remove(permissions(remove))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn delete_snapshot(&self, who: &Credentials, region: &Region, snapshot: &SnapshotId) -> Result<()> {
        let a = "ec2:DeleteSnapshot";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ec2
                .delete_snapshot()
                .snapshot_id(snapshot.as_str())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn create_volume(&self, who: &Credentials, region: &Region, volume: &CreateVolume) -> Result<VolumeInfo> {
        let a = "ec2:CreateVolume";
        let c = self.clients(who, Some(region));
        let owner = self.caller_identity(who)?.account;
        self.run(async {
            let v = c
                .ec2
                .create_volume()
                .availability_zone(volume.availability_zone.clone().unwrap_or_else(|| zone(region)))
                .set_snapshot_id(volume.snapshot.as_ref().map(ToString::to_string))
                .set_size(volume.size_gib.map(|s| s as i32))
                .set_encrypted(volume.encrypted.then_some(true))
                .set_kms_key_id(volume.kms_key_id.clone())
                .set_tag_specifications(tag_spec(ResourceType::Volume, &volume.tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(VolumeInfo {
                id: parse(a, "volume id", v.volume_id())?,
                owner,
                region: region.clone(),
                size_gib: v.size().unwrap_or(0).max(0) as u32,
                snapshot: v
                    .snapshot_id()
                    .filter(|s| !s.is_empty())
                    .and_then(|s| s.parse().ok()),
                state: v.state().map_or("creating", |s| s.as_str()).to_owned(),
                encryption: encryption(v.encrypted(), v.kms_key_id()),
                attachment: None,
                tags: from_ec2_tags(v.tags()),
            })
        })
    }

    fn delete_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        let a = "ec2:DeleteVolume";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ec2
                .delete_volume()
                .volume_id(volume.as_str())
                .send()
                .await
                .map_err(|e| map(a, e))?;
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
        let a = "ec2:AttachVolume";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ec2
                .attach_volume()
                .volume_id(volume.as_str())
                .instance_id(instance.as_str())
                .device(device)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn detach_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        let a = "ec2:DetachVolume";
        let c = self.clients(who, Some(region));
        // The instance is optional for AWS, but moto requires it; naming it is right for both.
        let instance = self
            .describe_volumes(who, region, std::slice::from_ref(volume))?
            .first()
            .and_then(|v| v.attachment.as_ref().map(|(i, _)| i.to_string()));
        self.run(async {
            c.ec2
                .detach_volume()
                .volume_id(volume.as_str())
                .set_instance_id(instance)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn run_instance(&self, who: &Credentials, region: &Region, run: &RunInstance) -> Result<InstanceInfo> {
        let a = "ec2:RunInstances";
        let image = self.worker_image(a, region)?;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .run_instances()
                .image_id(image)
                .instance_type(InstanceType::from(run.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                // A subnet decides the zone; without one, the zone asked for or the first.
                .set_placement(run.subnet.is_none().then(|| {
                    Placement::builder()
                        .availability_zone(run.availability_zone.clone().unwrap_or_else(|| zone(region)))
                        .build()
                }))
                .set_subnet_id(run.subnet.clone())
                .set_security_group_ids(
                    (!run.security_groups.is_empty()).then(|| run.security_groups.clone()),
                )
                .set_iam_instance_profile(
                    run.instance_profile
                        .as_ref()
                        .map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build()),
                )
                .set_user_data((!run.user_data.is_empty()).then(|| base64(run.user_data.as_bytes())))
                .set_tag_specifications(tag_spec(ResourceType::Instance, &run.tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let i = out.instances().first().ok_or_else(|| missing(a, "instance"))?;
            Ok(InstanceInfo {
                id: parse(a, "instance id", i.instance_id())?,
                owner: parse(a, "owner", out.owner_id())?,
                region: region.clone(),
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map_or("pending", |n| n.as_str())
                    .to_owned(),
                state_reason: None,
                volumes: Vec::new(),
                instance_profile: run.instance_profile.clone(),
                tags: run.tags.clone(),
                availability_zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .map(str::to_owned),
            })
        })
    }

    fn terminate_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()> {
        let a = "ec2:TerminateInstances";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ec2
                .terminate_instances()
                .instance_ids(instance.as_str())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn ebs_default_key(&self, who: &Credentials, region: &Region) -> Result<String> {
        let a = "ec2:GetEbsDefaultKmsKeyId";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .get_ebs_default_kms_key_id()
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out.kms_key_id().ok_or_else(|| missing(a, "KmsKeyId"))?.to_owned())
        })
    }

    fn ebs_encryption_by_default(&self, who: &Credentials, region: &Region) -> Result<bool> {
        let a = "ec2:GetEbsEncryptionByDefault";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .get_ebs_encryption_by_default()
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out.ebs_encryption_by_default().unwrap_or(false))
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
        let a = "ebs:ListSnapshotBlocks";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ebs
                .list_snapshot_blocks()
                .snapshot_id(snapshot.as_str())
                .set_next_token(next_token.map(str::to_owned))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(BlockPage {
                blocks: out
                    .blocks()
                    .iter()
                    .filter_map(|b| {
                        Some(BlockRef {
                            index: u64::try_from(b.block_index()?).ok()?,
                            token: b.block_token()?.to_owned(),
                        })
                    })
                    .collect(),
                volume_size_gib: out.volume_size().unwrap_or(0).max(0) as u32,
                next_token: out.next_token().map(str::to_owned),
            })
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
        let a = "ebs:ListChangedBlocks";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ebs
                .list_changed_blocks()
                .first_snapshot_id(first.as_str())
                .second_snapshot_id(second.as_str())
                .set_next_token(next_token.map(str::to_owned))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(BlockPage {
                blocks: out
                    .changed_blocks()
                    .iter()
                    .filter_map(|b| {
                        Some(BlockRef {
                            index: u64::try_from(b.block_index()?).ok()?,
                            // A block removed in the second snapshot has no token: it reads as zeros.
                            token: b.second_block_token().unwrap_or("").to_owned(),
                        })
                    })
                    .collect(),
                volume_size_gib: out.volume_size().unwrap_or(0).max(0) as u32,
                next_token: out.next_token().map(str::to_owned),
            })
        })
    }

    fn get_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        block: &BlockRef,
    ) -> Result<(Vec<u8>, String)> {
        let a = "ebs:GetSnapshotBlock";
        let ebs = self.clients(who, Some(region)).ebs;
        let (snapshot, index, token) = (
            snapshot.to_string(),
            i32::try_from(block.index).unwrap_or(i32::MAX),
            block.token.clone(),
        );
        self.run_spawned(a, async move {
            let out = ebs
                .get_snapshot_block()
                .snapshot_id(snapshot)
                .block_index(index)
                .block_token(token)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let checksum = out.checksum().unwrap_or("").to_owned();
            let data = out
                .block_data
                .collect()
                .await
                .map(bulwark_s3::body_bytes)
                .map_err(|e| {
                    CloudError::new(
                        a,
                        bulwark_cloud::ErrorKind::Unavailable,
                        "BodyFailed",
                        e.to_string(),
                    )
                })?;
            Ok((data, checksum))
        })
    }

    fn start_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        start: &StartSnapshot,
    ) -> Result<SnapshotId> {
        let a = "ebs:StartSnapshot";
        let c = self.clients(who, Some(region));
        self.run(async {
            let tags = start
                .tags
                .iter()
                .map(|t| {
                    aws_sdk_ebs::types::Tag::builder()
                        .key(&t.key)
                        .value(&t.value)
                        .build()
                })
                .collect();
            let out = c
                .ebs
                .start_snapshot()
                .volume_size(i64::from(start.volume_size_gib))
                .set_parent_snapshot_id(start.parent.as_ref().map(ToString::to_string))
                .set_encrypted(start.encrypted.then_some(true))
                .set_kms_key_arn(start.kms_key_arn.clone())
                .set_tags(Some(tags))
                .timeout(60)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            parse(a, "snapshot id", out.snapshot_id())
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
        let a = "ebs:PutSnapshotBlock";
        let ebs = self.clients(who, Some(region)).ebs;
        let body = ByteStream::from(data.to_vec());
        let (snapshot, index, length, checksum) = (
            snapshot.to_string(),
            i32::try_from(index).unwrap_or(i32::MAX),
            i32::try_from(data.len()).unwrap_or(i32::MAX),
            checksum.to_owned(),
        );
        self.run_spawned(a, async move {
            ebs.put_snapshot_block()
                .snapshot_id(snapshot)
                .block_index(index)
                .block_data(body)
                .data_length(length)
                .checksum(checksum)
                .checksum_algorithm(aws_sdk_ebs::types::ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .send()
                .await
                .map_err(|e| map(a, e))?;
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
        let a = "ebs:CompleteSnapshot";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ebs
                .complete_snapshot()
                .snapshot_id(snapshot.as_str())
                .changed_blocks_count(i32::try_from(changed_blocks).unwrap_or(i32::MAX))
                .checksum(checksum)
                .checksum_algorithm(aws_sdk_ebs::types::ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .checksum_aggregation_method(
                    aws_sdk_ebs::types::ChecksumAggregationMethod::ChecksumAggregationLinear,
                )
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    // ---- KMS --------------------------------------------------------------------------------

    fn describe_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<KeyInfo> {
        let a = "kms:DescribeKey";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .describe_key()
                .key_id(key)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let m = out.key_metadata().ok_or_else(|| missing(a, "KeyMetadata"))?;
            Ok(KeyInfo {
                arn: m.arn().ok_or_else(|| missing(a, "Arn"))?.to_owned(),
                account: parse(a, "AWSAccountId", m.aws_account_id())?,
                manager: match m.key_manager().map(|k| k.as_str()) {
                    Some("AWS") => KeyManager::Aws,
                    _ => KeyManager::Customer,
                },
                state: m.key_state().map_or("Enabled", |s| s.as_str()).to_owned(),
                spec: m
                    .key_spec()
                    .map_or("SYMMETRIC_DEFAULT", |s| s.as_str())
                    .to_owned(),
            })
        })
    }

    fn get_key_policy(&self, who: &Credentials, region: &Region, key: &str) -> Result<String> {
        let a = "kms:GetKeyPolicy";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .get_key_policy()
                .key_id(key)
                .policy_name("default")
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out.policy().ok_or_else(|| missing(a, "Policy"))?.to_owned())
        })
    }

    fn list_grants(&self, who: &Credentials, region: &Region, key: &str) -> Result<Vec<Grant>> {
        let a = "kms:ListGrants";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .list_grants()
                .key_id(key)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .grants()
                .iter()
                .map(|g| Grant {
                    id: g.grant_id().unwrap_or("").to_owned(),
                    grantee: g.grantee_principal().unwrap_or("").to_owned(),
                    operations: g.operations().iter().map(|o| o.as_str().to_owned()).collect(),
                })
                .collect())
        })
    }

    fn generate_data_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let a = "kms:GenerateDataKey";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .generate_data_key()
                .key_id(key)
                .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let plain = out
                .plaintext()
                .ok_or_else(|| missing(a, "Plaintext"))?
                .as_ref()
                .to_vec();
            let sealed = out
                .ciphertext_blob()
                .ok_or_else(|| missing(a, "CiphertextBlob"))?
                .as_ref()
                .to_vec();
            Ok((plain, sealed))
        })
    }

    fn decrypt(&self, who: &Credentials, region: &Region, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let a = "kms:Decrypt";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .decrypt()
                .ciphertext_blob(Blob::new(ciphertext.to_vec()))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .plaintext()
                .ok_or_else(|| missing(a, "Plaintext"))?
                .as_ref()
                .to_vec())
        })
    }

    // ---- IAM --------------------------------------------------------------------------------

    fn get_role(&self, who: &Credentials, role: &RoleArn) -> Result<RoleInfo> {
        let a = "iam:GetRole";
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .iam
                .get_role()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let r = out.role().ok_or_else(|| missing(a, "Role"))?;
            let trust = url_decode(r.assume_role_policy_document().unwrap_or("{}"));
            let names = c
                .iam
                .list_role_policies()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map("iam:ListRolePolicies", e))?;
            let mut inline_policies = Vec::new();
            for name in names.policy_names() {
                let p = c
                    .iam
                    .get_role_policy()
                    .role_name(role.name())
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| map("iam:GetRolePolicy", e))?;
                inline_policies.push((name.clone(), url_decode(p.policy_document())));
            }
            Ok(RoleInfo {
                arn: r.arn().to_owned(),
                trust_policy: trust,
                inline_policies,
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
        let a = "iam:CreateRole";
        let c = self.clients(who, None);
        self.run(async {
            let tags = tags
                .iter()
                .filter_map(|t| {
                    aws_sdk_iam::types::Tag::builder()
                        .key(&t.key)
                        .value(&t.value)
                        .build()
                        .ok()
                })
                .collect();
            let out = c
                .iam
                .create_role()
                .path(path)
                .role_name(name)
                .assume_role_policy_document(trust_policy)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let arn = out.role().map(|r| r.arn().to_owned());
            parse(a, "role ARN", arn.as_deref())
        })
    }

    fn delete_role(&self, who: &Credentials, role: &RoleArn) -> Result<()> {
        let a = "iam:DeleteRole";
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .delete_role()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn put_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str, document: &str) -> Result<()> {
        let a = "iam:PutRolePolicy";
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .put_role_policy()
                .role_name(role.name())
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn delete_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str) -> Result<()> {
        let a = "iam:DeleteRolePolicy";
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .delete_role_policy()
                .role_name(role.name())
                .policy_name(name)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn create_instance_profile(&self, who: &Credentials, path: &str, name: &str) -> Result<String> {
        let a = "iam:CreateInstanceProfile";
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .iam
                .create_instance_profile()
                .path(path)
                .instance_profile_name(name)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.instance_profile()
                .map(|p| p.arn().to_owned())
                .ok_or_else(|| missing(a, "InstanceProfile"))
        })
    }

    fn delete_instance_profile(&self, who: &Credentials, profile: &str) -> Result<()> {
        let a = "iam:DeleteInstanceProfile";
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .delete_instance_profile()
                .instance_profile_name(profile_name(profile))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn add_role_to_instance_profile(&self, who: &Credentials, profile: &str, role: &RoleArn) -> Result<()> {
        let a = "iam:AddRoleToInstanceProfile";
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .add_role_to_instance_profile()
                .instance_profile_name(profile_name(profile))
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn remove_role_from_instance_profile(
        &self,
        who: &Credentials,
        profile: &str,
        role: &RoleArn,
    ) -> Result<()> {
        let a = "iam:RemoveRoleFromInstanceProfile";
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .remove_role_from_instance_profile()
                .instance_profile_name(profile_name(profile))
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn list_instance_profiles_for_role(&self, who: &Credentials, role: &RoleArn) -> Result<Vec<String>> {
        let a = "iam:ListInstanceProfilesForRole";
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .iam
                .list_instance_profiles_for_role()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .instance_profiles()
                .iter()
                .map(|p| p.arn().to_owned())
                .collect())
        })
    }

    // ---- SQS --------------------------------------------------------------------------------

    fn create_queue(&self, who: &Credentials, region: &Region, name: &str) -> Result<String> {
        let a = "sqs:CreateQueue";
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .sqs
                .create_queue()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out.queue_url().ok_or_else(|| missing(a, "QueueUrl"))?.to_owned())
        })
    }

    fn set_queue_policy(&self, who: &Credentials, region: &Region, queue: &str, policy: &str) -> Result<()> {
        let a = "sqs:SetQueueAttributes";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .set_queue_attributes()
                .queue_url(queue)
                .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn delete_queue(&self, who: &Credentials, region: &Region, queue: &str) -> Result<()> {
        let a = "sqs:DeleteQueue";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .delete_queue()
                .queue_url(queue)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn send_message(&self, who: &Credentials, region: &Region, queue: &str, body: &str) -> Result<()> {
        let a = "sqs:SendMessage";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .send_message()
                .queue_url(queue)
                .message_body(body)
                .send()
                .await
                .map_err(|e| map(a, e))?;
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
        let a = "sqs:ReceiveMessage";
        let c = self.clients(who, Some(region));
        // A long poll waits whole seconds, at most 20.
        let seconds = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        self.run(async {
            let out = c
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(seconds)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .messages()
                .iter()
                .map(|m| Message {
                    receipt: m.receipt_handle().unwrap_or("").to_owned(),
                    body: m.body().unwrap_or("").to_owned(),
                })
                .collect())
        })
    }

    fn delete_message(&self, who: &Credentials, region: &Region, queue: &str, receipt: &str) -> Result<()> {
        let a = "sqs:DeleteMessage";
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| map(a, e))?;
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
        let a = "s3:ListBucket";
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let options = bulwark_s3::S3Options {
            endpoint_url: self.options.endpoint_url.clone(),
            region: Some(region.to_string()),
            credentials: Some(std::sync::Arc::new(Renewable(who.clone()))),
        };
        let backend = bulwark_s3::S3Backend::open(&url, &options)
            .map_err(|e| CloudError::invalid(a, "InvalidRepository", e.to_string()))?;
        Ok(Box::new(backend))
    }
}

/// The volume id AWS gives snapshots that were not taken of a volume (copies, EBS direct API
/// snapshots).
fn unknown_volume() -> VolumeId {
    "vol-ffffffff".parse().expect("vol-ffffffff is a valid volume id")
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn user_data_is_base64() {
        assert_eq!(base64(b"bulwark"), "YnVsd2Fyaw==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }
}

/// Shared credentials as the S3 backend asks for them, at each request.
#[derive(Debug)]
struct Renewable(SharedCredentials);

impl bulwark_s3::CredentialSource for Renewable {
    fn current(&self) -> bulwark_s3::S3Credentials {
        let c = self.0.get();
        bulwark_s3::S3Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
        }
    }
}
