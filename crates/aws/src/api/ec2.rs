//! EC2 through the SDK: snapshots, volumes, attachments, instances, EBS defaults.

#[allow(clippy::wildcard_imports)]
use super::*;
use bulwark_model::Performance;

impl Ec2 for AwsCloud {
    fn describe_instances(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceInfo>> {
        self.find_instances(who, region, Select::Ids(ids))
    }

    fn instances_tagged(
        &self,
        who: &Credentials,
        region: &Region,
        tags: &[Tag],
    ) -> Result<Vec<InstanceInfo>> {
        self.find_instances(who, region, Select::Tags(tags))
    }

    fn describe_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[VolumeId],
    ) -> Result<Vec<VolumeInfo>> {
        self.find_volumes(who, region, Select::Ids(ids))
    }

    fn volumes_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag]) -> Result<Vec<VolumeInfo>> {
        self.find_volumes(who, region, Select::Tags(tags))
    }

    fn describe_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[SnapshotId],
    ) -> Result<Vec<SnapshotInfo>> {
        self.find_snapshots(who, region, Select::Ids(ids))
    }

    fn snapshots_tagged(
        &self,
        who: &Credentials,
        region: &Region,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>> {
        self.find_snapshots(who, region, Select::Tags(tags))
    }

    fn create_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>> {
        let a = Action::Ec2CreateSnapshots;
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
        let a = Action::Ec2CreateSnapshot;
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
        let a = Action::Ec2CopySnapshot;
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
        let a = Action::Ec2ModifySnapshotAttribute;
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
        let a = Action::Ec2DeleteSnapshot;
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
        let a = Action::Ec2CreateVolume;
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
                .set_client_token(volume.client_token.clone())
                .set_volume_type(volume.volume_type.map(|t| t.as_str().into()))
                .set_iops(volume.iops.map(|n| n as i32))
                .set_throughput(volume.throughput.map(|n| n as i32))
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
                attachment_state: None,
                tags: from_ec2_tags(v.tags()),
                performance: performance(v.volume_type(), v.iops(), v.throughput()),
            })
        })
    }

    fn delete_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        let a = Action::Ec2DeleteVolume;
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
        let a = Action::Ec2AttachVolume;
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
        let a = Action::Ec2DetachVolume;
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
        let a = Action::Ec2RunInstances;
        let image = match &run.image {
            Some(image) => image.to_string(),
            None => self.worker_image(a, region)?,
        };
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
                .set_client_token(run.client_token.clone())
                .set_key_name(run.key_name.clone())
                .set_metadata_options(run.imds_v2_only.then(|| {
                    aws_sdk_ec2::types::InstanceMetadataOptionsRequest::builder()
                        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
                        .http_put_response_hop_limit(1)
                        .http_endpoint(aws_sdk_ec2::types::InstanceMetadataEndpointState::Enabled)
                        .build()
                }))
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
                setup: setup_of(i),
            })
        })
    }

    fn terminate_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()> {
        let a = Action::Ec2TerminateInstances;
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

    fn stop_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()> {
        let a = Action::Ec2StopInstances;
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ec2
                .stop_instances()
                .instance_ids(instance.as_str())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn set_delete_on_termination(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        device: &str,
        delete: bool,
    ) -> Result<()> {
        let a = Action::Ec2ModifyInstanceAttribute;
        let c = self.clients(who, Some(region));
        self.run(async {
            let mapping = aws_sdk_ec2::types::InstanceBlockDeviceMappingSpecification::builder()
                .device_name(device)
                .ebs(
                    aws_sdk_ec2::types::EbsInstanceBlockDeviceSpecification::builder()
                        .delete_on_termination(delete)
                        .build(),
                )
                .build();
            c.ec2
                .modify_instance_attribute()
                .instance_id(instance.as_str())
                .block_device_mappings(mapping)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn register_image(&self, who: &Credentials, region: &Region, image: &RegisterImage) -> Result<ImageId> {
        let a = Action::Ec2RegisterImage;
        let c = self.clients(who, Some(region));
        self.run(async {
            let devices = image
                .devices
                .iter()
                .map(|d| {
                    let p = d.performance;
                    let ebs = aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .snapshot_id(d.snapshot.as_str())
                        .set_volume_size(d.size_gib.and_then(|g| i32::try_from(g).ok()))
                        .set_volume_type(
                            p.map(|p| aws_sdk_ec2::types::VolumeType::from(p.volume_type.as_str())),
                        )
                        .set_iops(p.and_then(|p| p.iops).and_then(|n| i32::try_from(n).ok()))
                        .set_throughput(p.and_then(|p| p.throughput).and_then(|n| i32::try_from(n).ok()))
                        .delete_on_termination(d.delete_on_termination)
                        .build();
                    aws_sdk_ec2::types::BlockDeviceMapping::builder()
                        .device_name(&d.device)
                        .ebs(ebs)
                        .build()
                })
                .collect();
            let out = c
                .ec2
                .register_image()
                .name(&image.name)
                .architecture(aws_sdk_ec2::types::ArchitectureValues::from(
                    image.architecture.as_str(),
                ))
                .set_boot_mode(
                    image
                        .boot_mode
                        .as_deref()
                        .map(aws_sdk_ec2::types::BootModeValues::from),
                )
                .root_device_name(&image.root_device)
                .ena_support(image.ena_support)
                .virtualization_type("hvm")
                .set_block_device_mappings(Some(devices))
                .set_tag_specifications(tag_spec(ResourceType::Image, &image.tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            parse(a, "image id", out.image_id())
        })
    }

    fn describe_images(&self, who: &Credentials, region: &Region, ids: &[ImageId]) -> Result<Vec<ImageInfo>> {
        self.find_images(who, region, Select::Ids(ids))
    }

    fn images_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag]) -> Result<Vec<ImageInfo>> {
        self.find_images(who, region, Select::Tags(tags))
    }

    fn deregister_image(&self, who: &Credentials, region: &Region, image: &ImageId) -> Result<()> {
        let a = Action::Ec2DeregisterImage;
        let c = self.clients(who, Some(region));
        self.run(async {
            c.ec2
                .deregister_image()
                .image_id(image.as_str())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn ebs_default_key(&self, who: &Credentials, region: &Region) -> Result<String> {
        let a = Action::Ec2GetEbsDefaultKmsKeyId;
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
        let a = Action::Ec2GetEbsEncryptionByDefault;
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
}

/// What a Describe call selects: resources by id, or the caller's resources carrying tags.
enum Select<'a, T> {
    Ids(&'a [T]),
    Tags(&'a [Tag]),
}

impl<T: std::fmt::Display> Select<'_, T> {
    fn ids(&self) -> Option<Vec<String>> {
        match self {
            Select::Ids(ids) => Some(ids.iter().map(ToString::to_string).collect()),
            Select::Tags(_) => None,
        }
    }

    fn filters(&self) -> Option<Vec<aws_sdk_ec2::types::Filter>> {
        match self {
            Select::Ids(_) => None,
            Select::Tags(tags) => Some(
                tags.iter()
                    .map(|t| {
                        aws_sdk_ec2::types::Filter::builder()
                            .name(format!("tag:{}", t.key))
                            .values(t.value.clone())
                            .build()
                    })
                    .collect(),
            ),
        }
    }
}

impl AwsCloud {
    fn find_images(
        &self,
        who: &Credentials,
        region: &Region,
        select: Select<'_, ImageId>,
    ) -> Result<Vec<ImageInfo>> {
        let a = Action::Ec2DescribeImages;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .describe_images()
                .set_image_ids(select.ids())
                .set_filters(select.filters())
                // Tags select among the caller's own images, not every public one.
                .set_owners(matches!(select, Select::Tags(_)).then(|| vec!["self".to_owned()]))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.images()
                .iter()
                .map(|i| {
                    let devices = i
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| {
                            let ebs = m.ebs()?;
                            Some(bulwark_cloud::ImageDevice {
                                device: m.device_name()?.to_owned(),
                                snapshot: ebs.snapshot_id()?.parse().ok()?,
                                size_gib: ebs.volume_size().and_then(|g| u32::try_from(g).ok()),
                                performance: performance(ebs.volume_type(), ebs.iops(), ebs.throughput()),
                                delete_on_termination: ebs.delete_on_termination().unwrap_or(true),
                            })
                        })
                        .collect();
                    Ok(ImageInfo {
                        id: parse(a, "image id", i.image_id())?,
                        owner: parse(a, "owner", i.owner_id())?,
                        region: region.clone(),
                        state: i.state().map_or("pending", |s| s.as_str()).to_owned(),
                        image: RegisterImage {
                            name: i.name().unwrap_or_default().to_owned(),
                            architecture: i.architecture().map_or("x86_64", |s| s.as_str()).to_owned(),
                            boot_mode: i.boot_mode().map(|m| m.as_str().to_owned()),
                            root_device: i.root_device_name().unwrap_or_default().to_owned(),
                            ena_support: i.ena_support().unwrap_or(false),
                            devices,
                            tags: from_ec2_tags(i.tags()),
                        },
                    })
                })
                .collect()
        })
    }

    fn find_instances(
        &self,
        who: &Credentials,
        region: &Region,
        select: Select<'_, InstanceId>,
    ) -> Result<Vec<InstanceInfo>> {
        let a = Action::Ec2DescribeInstances;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .describe_instances()
                .set_instance_ids(select.ids())
                .set_filters(select.filters())
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
                        setup: setup_of(i),
                    });
                }
            }
            Ok(infos)
        })
    }

    fn find_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        select: Select<'_, VolumeId>,
    ) -> Result<Vec<VolumeInfo>> {
        let a = Action::Ec2DescribeVolumes;
        let c = self.clients(who, Some(region));
        let owner = self.caller_identity(who)?.account;
        self.run(async {
            let out = c
                .ec2
                .describe_volumes()
                .set_volume_ids(select.ids())
                .set_filters(select.filters())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.volumes()
                .iter()
                .map(|v| {
                    let first = v.attachments().first();
                    let attachment =
                        first.and_then(|at| Some((at.instance_id()?.parse().ok()?, at.device()?.to_owned())));
                    let attachment_state = first.and_then(|at| at.state()).map(|s| s.as_str().to_owned());
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
                        attachment_state,
                        tags: from_ec2_tags(v.tags()),
                        performance: performance(v.volume_type(), v.iops(), v.throughput()),
                    })
                })
                .collect()
        })
    }

    fn find_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        select: Select<'_, SnapshotId>,
    ) -> Result<Vec<SnapshotInfo>> {
        let a = Action::Ec2DescribeSnapshots;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .ec2
                .describe_snapshots()
                .set_snapshot_ids(select.ids())
                .set_filters(select.filters())
                // Found by tags: the caller's own only (shared and public ones are not its to remove).
                .set_owner_ids(select.ids().is_none().then(|| vec!["self".to_owned()]))
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
}

/// An instance's type and network as EC2 describes it.
fn setup_of(i: &aws_sdk_ec2::types::Instance) -> bulwark_cloud::InstanceSetup {
    bulwark_cloud::InstanceSetup {
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
        subnet: i.subnet_id().map(str::to_owned),
        security_groups: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        boot: bulwark_cloud::InstanceBoot {
            image: i.image_id().and_then(|id| id.parse().ok()),
            architecture: i.architecture().map(|a| a.as_str().to_owned()),
            // As launched (`uefi-preferred`), else as it runs.
            boot_mode: i
                .boot_mode()
                .map(|m| m.as_str().to_owned())
                .or_else(|| i.current_instance_boot_mode().map(|m| m.as_str().to_owned())),
            root_device: i.root_device_name().map(str::to_owned),
            ena_support: i.ena_support().unwrap_or(false),
            key_name: i.key_name().map(str::to_owned),
        },
        deleted_on_termination: i
            .block_device_mappings()
            .iter()
            .filter(|m| m.ebs().and_then(|e| e.delete_on_termination()).unwrap_or(false))
            .filter_map(|m| m.device_name().map(str::to_owned))
            .collect(),
    }
}

/// A volume's type and performance as EC2 reports them; `None` for a type Bulwark does not know.
fn performance(
    volume_type: Option<&aws_sdk_ec2::types::VolumeType>,
    iops: Option<i32>,
    throughput: Option<i32>,
) -> Option<Performance> {
    let positive = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
    Some(Performance {
        volume_type: volume_type?.as_str().parse().ok()?,
        iops: positive(iops),
        throughput: positive(throughput),
    })
}
