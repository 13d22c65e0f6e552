//! EC2: snapshots, volumes, attachments and instances, with the EBS encryption and sharing rules.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Ec2 for Sim {
    fn describe_instances(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceInfo>> {
        self.call(Action::Ec2DescribeInstances, who, |c, w| {
            c.check(w, c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    let i = own_instance(w, c, region, id)?;
                    Ok(instance_info(c.account(), region, id, i))
                })
                .collect()
        })
    }

    fn describe_volumes(
        &self,
        who: &Credentials,
        region: &Region,
        ids: &[VolumeId],
    ) -> Result<Vec<VolumeInfo>> {
        self.call(Action::Ec2DescribeVolumes, who, |c, w| {
            c.check(w, c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    let v = own_volume(w, c, region, id)?;
                    Ok(volume_info(c.account(), region, id, v))
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
        self.call(Action::Ec2DescribeSnapshots, who, |c, w| {
            c.check(w, c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    let (owner, s) = visible_snapshot(w, c, region, id)?;
                    Ok(snapshot_info(&owner, region, id, &s))
                })
                .collect()
        })
    }

    fn snapshots_tagged(
        &self,
        who: &Credentials,
        region: &Region,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>> {
        self.call(Action::Ec2DescribeSnapshots, who, |c, w| {
            own_tagged(w, c, region, tags, |r| &r.snapshots, |x| &x.tags, snapshot_info)
        })
    }

    fn volumes_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag]) -> Result<Vec<VolumeInfo>> {
        self.call(Action::Ec2DescribeVolumes, who, |c, w| {
            own_tagged(w, c, region, tags, |r| &r.volumes, |x| &x.tags, volume_info)
        })
    }

    fn instances_tagged(
        &self,
        who: &Credentials,
        region: &Region,
        tags: &[Tag],
    ) -> Result<Vec<InstanceInfo>> {
        self.call(Action::Ec2DescribeInstances, who, |c, w| {
            own_tagged(w, c, region, tags, |r| &r.instances, |x| &x.tags, instance_info)
        })
    }

    fn create_snapshots(
        &self,
        who: &Credentials,
        region: &Region,
        instance: &InstanceId,
        tags: &[Tag],
    ) -> Result<Vec<SnapshotInfo>> {
        self.call(Action::Ec2CreateSnapshots, who, |c, w| {
            let account = c.account().clone();
            let volumes = own_instance(w, c, region, instance)?.volumes.clone();
            c.check(
                w,
                c.action,
                &instance_arn(&account, region, instance.as_str()),
                &[],
                None,
            )?;
            for (v, _) in &volumes {
                c.check(w, c.action, &volume_arn(&account, region, v.as_str()), &[], None)?;
            }
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, c.action, &any_snapshot, &[], None)?;
            check_tags(w, c, tags, &any_snapshot)?;
            let mut out = Vec::new();
            let ready = crate::clock::done_at(w);
            for (v, _) in volumes {
                let id: SnapshotId = parse_id(c.action, "InternalError", &new_id(w, "snap"))?;
                let r = region_mut(w, &account, region);
                let Some(volume) = r.volumes.get(&v) else { continue };
                let snapshot = Snapshot {
                    volume: v.clone(),
                    size_gib: volume.size_gib,
                    key: volume.key.clone(),
                    shared_with: Vec::new(),
                    state: "completed".into(),
                    tags: tags.to_vec(),
                    lineage: volume.lineage,
                    blocks: volume.blocks.clone(),
                    written: Default::default(),
                    ready_at: ready,
                };
                out.push(snapshot_info(&account, region, &id, &snapshot));
                r.snapshots.insert(id, snapshot);
            }
            Ok(out)
        })
    }

    fn create_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        volume: &VolumeId,
        tags: &[Tag],
    ) -> Result<SnapshotInfo> {
        self.call(Action::Ec2CreateSnapshot, who, |c, w| {
            let account = c.account().clone();
            let v = own_volume(w, c, region, volume)?.clone();
            c.check(
                w,
                c.action,
                &volume_arn(&account, region, volume.as_str()),
                &[],
                None,
            )?;
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, c.action, &any_snapshot, &[], None)?;
            check_tags(w, c, tags, &any_snapshot)?;
            let id: SnapshotId = parse_id(c.action, "InternalError", &new_id(w, "snap"))?;
            let snapshot = Snapshot {
                volume: volume.clone(),
                size_gib: v.size_gib,
                key: v.key.clone(),
                shared_with: Vec::new(),
                state: "completed".into(),
                tags: tags.to_vec(),
                lineage: v.lineage,
                blocks: v.blocks.clone(),
                written: Default::default(),
                ready_at: crate::clock::done_at(w),
            };
            let info = snapshot_info(&account, region, &id, &snapshot);
            region_mut(w, &account, region).snapshots.insert(id, snapshot);
            Ok(info)
        })
    }

    fn copy_snapshot(&self, who: &Credentials, region: &Region, copy: &CopySnapshot) -> Result<SnapshotId> {
        self.call(Action::Ec2CopySnapshot, who, |c, w| {
            let account = c.account().clone();
            let (owner, source) = visible_snapshot(w, c, &copy.source_region, &copy.source)?;
            c.check(
                w,
                c.action,
                &snapshot_arn(&copy.source_region, &copy.source),
                &[],
                None,
            )?;
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, c.action, &any_snapshot, &[], None)?;
            check_tags(w, c, &copy.tags, &any_snapshot)?;
            let source_state = crate::clock::snapshot_state(&source, crate::clock::now());
            if source_state != "completed" {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("snapshot {} is {source_state}", copy.source),
                ));
            }
            if copy.kms_key_id.is_some() && !copy.encrypted {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterDependency",
                    "KmsKeyId requires Encrypted=true",
                ));
            }
            let by_default = region_mut(w, &account, region).encryption_by_default;
            // The copy's key: the one asked for; else the source's own key for a copy of one's
            // own snapshot within its region; else the caller's default key of the destination.
            let target = match (&copy.kms_key_id, &source.key) {
                (Some(k), _) => Some(resolve_key_arn(w, c, region, k)?),
                (None, Some(k)) if owner == account && &copy.source_region == region => Some(k.clone()),
                (None, Some(_)) => Some(default_key_arn(w, &account, region)),
                (None, None) if copy.encrypted || by_default => Some(default_key_arn(w, &account, region)),
                (None, None) => None,
            };
            if let Some(k) = &source.key {
                ebs_may_use_arn(w, c, k)?;
            }
            if let Some(k) = target.as_ref().filter(|t| Some(*t) != source.key.as_ref()) {
                ebs_may_use_arn(w, c, k)?;
            }
            // Changing the key or the region makes a full copy: a new lineage.
            let lineage = if target == source.key && &copy.source_region == region && owner == account {
                source.lineage
            } else {
                w.next_id += 1;
                w.next_id
            };
            let id: SnapshotId = parse_id(c.action, "InternalError", &new_id(w, "snap"))?;
            // A copy takes longer than a snapshot: it moves every block.
            let ready = crate::clock::done_at(w).saturating_add(w.latency_ms);
            region_mut(w, &account, region).snapshots.insert(
                id.clone(),
                Snapshot {
                    volume: parse_id(c.action, "InternalError", "vol-ffffffff")?,
                    size_gib: source.size_gib,
                    key: target,
                    shared_with: Vec::new(),
                    state: "completed".into(),
                    tags: copy.tags.clone(),
                    lineage,
                    blocks: source.blocks.clone(),
                    written: Default::default(),
                    ready_at: ready,
                },
            );
            Ok(id)
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
        self.call(Action::Ec2ModifySnapshotAttribute, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, snapshot), &[], None)?;
            if add.len() + remove.len() > 500 {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterValue",
                    "at most 500 accounts per call",
                ));
            }
            let key = own_snapshot(w, c, region, snapshot)?.key.clone();
            if !add.is_empty() {
                if let Some((owner, r, id)) = key.as_deref().and_then(key_parts) {
                    let managed = crate::rules::key(w, &owner, &r, &id).is_some_and(|k| k.aws_managed);
                    if managed {
                        return Err(CloudError::new(
                            c.action,
                            ErrorKind::NotPermitted,
                            "OperationNotPermitted",
                            "Encrypted snapshots with EBS default key cannot be shared",
                        ));
                    }
                }
            }
            let s = own_snapshot(w, c, region, snapshot)?;
            for a in add {
                if !s.shared_with.contains(a) {
                    s.shared_with.push(a.clone());
                }
            }
            s.shared_with.retain(|a| !remove.contains(a));
            Ok(())
        })
    }

    fn delete_snapshot(&self, who: &Credentials, region: &Region, snapshot: &SnapshotId) -> Result<()> {
        self.call(Action::Ec2DeleteSnapshot, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, snapshot), &[], None)?;
            own_snapshot(w, c, region, snapshot)?;
            if let Some(image) = images::image_using(w, c, region, snapshot) {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "InvalidSnapshot.InUse",
                    format!("The snapshot {snapshot} is currently in use by {image}"),
                ));
            }
            region_mut(w, c.account(), region).snapshots.remove(snapshot);
            Ok(())
        })
    }

    fn create_volume(&self, who: &Credentials, region: &Region, volume: &CreateVolume) -> Result<VolumeInfo> {
        self.call(Action::Ec2CreateVolume, who, |c, w| {
            let account = c.account().clone();
            if let Some(id) = made_with(w, &account, region, volume.client_token.as_deref()) {
                // The same call again (its first answer was lost): the same volume.
                let id: VolumeId = parse_id(c.action, "InternalError", &id)?;
                return own_volume(w, c, region, &id).map(|v| volume_info(&account, region, &id, v));
            }
            let any_volume = volume_arn(&account, region, "*");
            c.check(w, c.action, &any_volume, &[], None)?;
            check_tags(w, c, &volume.tags, &any_volume)?;
            if volume.kms_key_id.is_some() && !volume.encrypted {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterDependency",
                    "KmsKeyId requires Encrypted=true",
                ));
            }
            let source = match &volume.snapshot {
                Some(id) => {
                    c.check(w, c.action, &snapshot_arn(region, id), &[], None)?;
                    let (owner, s) = visible_snapshot(w, c, region, id)?;
                    let state = crate::clock::snapshot_state(&s, crate::clock::now());
                    if state != "completed" {
                        return Err(CloudError::new(
                            c.action,
                            ErrorKind::NotPermitted,
                            "IncorrectState",
                            format!("Snapshot is in invalid state - {state}"),
                        ));
                    }
                    Some((owner, s))
                }
                None => None,
            };
            let by_default = region_mut(w, &account, region).encryption_by_default;
            // A volume of an encrypted snapshot is always encrypted: with the key asked for,
            // else the snapshot's key if the caller owns it, else the caller's default key.
            let key = match (
                &volume.kms_key_id,
                source.as_ref().and_then(|(o, s)| s.key.clone().map(|k| (o, k))),
            ) {
                (Some(k), _) => Some(resolve_key_arn(w, c, region, k)?),
                (None, Some((owner, k))) if owner == &account => Some(k),
                (None, Some(_)) => Some(default_key_arn(w, &account, region)),
                (None, None) if volume.encrypted || by_default => Some(default_key_arn(w, &account, region)),
                (None, None) => None,
            };
            let source_key = source.as_ref().and_then(|(_, s)| s.key.clone());
            if let Some(k) = &source_key {
                ebs_may_use_arn(w, c, k)?;
            }
            if let Some(k) = key.as_ref().filter(|k| Some(*k) != source_key.as_ref()) {
                ebs_may_use_arn(w, c, k)?;
            }
            let min = source.as_ref().map_or(1, |(_, s)| s.size_gib);
            let size = volume
                .size_gib
                .or(source.as_ref().map(|(_, s)| s.size_gib))
                .ok_or_else(|| {
                    CloudError::invalid(
                        c.action,
                        "MissingParameter",
                        "a volume needs a Size or a SnapshotId",
                    )
                })?;
            if size < min || size > bulwark_model::MAX_VOLUME_GIB {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterValue",
                    format!(
                        "size {size} GiB must be between {min} and {} GiB",
                        bulwark_model::MAX_VOLUME_GIB
                    ),
                ));
            }
            let performance = volume
                .volume_type
                .unwrap_or(bulwark_model::VolumeType::Gp2)
                .performance(size, volume.iops, volume.throughput)
                .map_err(|r| CloudError::invalid(c.action, r.code, r.message))?;
            let lineage = match &source {
                Some((_, s)) => s.lineage,
                None => {
                    w.next_id += 1;
                    w.next_id
                }
            };
            let id: VolumeId = parse_id(c.action, "InternalError", &new_id(w, "vol"))?;
            let v = Volume {
                size_gib: size,
                snapshot: volume.snapshot.clone(),
                key,
                attachment: None,
                tags: volume.tags.clone(),
                lineage,
                blocks: source.map(|(_, s)| s.blocks).unwrap_or_default(),
                zone: zone_in(c.action, region, volume.availability_zone.as_deref())?,
                ready_at: crate::clock::done_at(w),
                attach_at: 0,
                detach_at: None,
                performance: Some(performance),
            };
            let info = volume_info(&account, region, &id, &v);
            remember_token(w, &account, region, volume.client_token.as_deref(), id.as_str());
            region_mut(w, &account, region).volumes.insert(id, v);
            Ok(info)
        })
    }

    fn delete_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        self.call(Action::Ec2DeleteVolume, who, |c, w| {
            c.check(
                w,
                c.action,
                &volume_arn(c.account(), region, volume.as_str()),
                &[],
                None,
            )?;
            if let Some((i, _)) = &own_volume(w, c, region, volume)?.attachment {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "VolumeInUse",
                    format!("Volume {volume} is currently attached to {i}"),
                ));
            }
            region_mut(w, c.account(), region).volumes.remove(volume);
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
        self.call(Action::Ec2AttachVolume, who, |c, w| {
            let account = c.account().clone();
            c.check(
                w,
                c.action,
                &instance_arn(&account, region, instance.as_str()),
                &[],
                None,
            )?;
            c.check(
                w,
                c.action,
                &volume_arn(&account, region, volume.as_str()),
                &[],
                None,
            )?;
            let i = own_instance(w, c, region, instance)?.clone();
            let v = own_volume(w, c, region, volume)?.clone();
            let now = crate::clock::now();
            if crate::clock::volume_state(&v, now) == "creating" {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("Volume '{volume}' is in the 'creating' state."),
                ));
            }
            if let Some((other, _)) = &v.attachment {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "VolumeInUse",
                    format!("{volume} is already attached to {other}"),
                ));
            }
            let instance_state = crate::clock::instance_state(&i, now);
            if instance_state != "running" && instance_state != "stopped" {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("Instance '{instance}' is not 'running'; it is {instance_state}."),
                ));
            }
            if zone_of(region, &v.zone) != zone_of(region, &i.zone) {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidVolume.ZoneMismatch",
                    format!(
                        "The volume '{volume}' is not in the same availability zone as instance '{instance}'"
                    ),
                ));
            }
            if i.volumes.iter().any(|(_, d)| d == device) {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterValue",
                    format!("device {device} is already in use on {instance}"),
                ));
            }
            // EBS creates a grant on the volume's key for the instance: the caller needs
            // kms:CreateGrant (and the other EBS key permissions) on it.
            if let Some(k) = &v.key {
                ebs_may_use_arn(w, c, k)?;
                grant_for_instance(w, k, region, instance, volume);
            }
            let attached_at = crate::clock::done_at(w);
            let v = own_volume(w, c, region, volume)?;
            v.attachment = Some((instance.clone(), device.to_owned()));
            v.attach_at = attached_at;
            own_instance(w, c, region, instance)?
                .volumes
                .push((volume.clone(), device.to_owned()));
            Ok(())
        })
    }

    fn detach_volume(&self, who: &Credentials, region: &Region, volume: &VolumeId) -> Result<()> {
        self.call(Action::Ec2DetachVolume, who, |c, w| {
            let account = c.account().clone();
            c.check(
                w,
                c.action,
                &volume_arn(&account, region, volume.as_str()),
                &[],
                None,
            )?;
            let v = own_volume(w, c, region, volume)?.clone();
            let Some((instance, _)) = v.attachment else {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("Volume '{volume}' is in the 'available' state."),
                ));
            };
            if v.detach_at.is_some() {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectState",
                    format!("Volume '{volume}' is in the 'detaching' state."),
                ));
            }
            c.check(
                w,
                c.action,
                &instance_arn(&account, region, instance.as_str()),
                &[],
                None,
            )?;
            // The volume stays in use, `detaching`, until the detachment ends (`clock::settle`).
            let _ = instance;
            let ends = crate::clock::done_at(w);
            own_volume(w, c, region, volume)?.detach_at = Some(ends);
            Ok(())
        })
    }

    fn run_instance(&self, who: &Credentials, region: &Region, run: &RunInstance) -> Result<InstanceInfo> {
        let ((info, boots), lost) = self.call_effect(Action::Ec2RunInstances, who, |c, w| {
            let account = c.account().clone();
            if let Some(id) = made_with(w, &account, region, run.client_token.as_deref()) {
                // The same launch again (its first answer was lost): the same instance.
                let id: InstanceId = parse_id(c.action, "InternalError", &id)?;
                let info = own_instance(w, c, region, &id).map(|i| instance_info(&account, region, &id, i))?;
                return Ok((info, None));
            }
            let any_instance = instance_arn(&account, region, "*");
            c.check(w, c.action, &any_instance, &[], None)?;
            check_tags(w, c, &run.tags, &any_instance)?;
            if let Some(arn) = &run.instance_profile {
                let invalid = || {
                    CloudError::aws(
                        c.action,
                        "InvalidParameterValue",
                        format!("Value ({arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN"),
                    )
                };
                let name = arn.rsplit('/').next().unwrap_or_default().to_owned();
                let a = w.accounts.entry(account.clone()).or_default();
                let profile = a.profiles.get_mut(&name).filter(|p| profile_arn(&account, &p.path, &p.name) == *arn).ok_or_else(invalid)?;
                // IAM is eventually consistent: a fresh profile is not yet visible to EC2.
                if profile.unseen_launches > 0 {
                    profile.unseen_launches -= 1;
                    // The world is saved as the call ends, the count down included.
                    return Err(invalid());
                }
                let role = profile.role.clone().ok_or_else(invalid)?;
                c.check(w, Action::IamPassRole, &role_arn(w, &account, &role), &[("iam:PassedToService", "ec2.amazonaws.com".into())], None)?;
            }
            // Faults that shape the next instance launched.
            let dies = take_fault(w, |f| match f {
                Fault::WorkerDies { after_bytes } => Some(*after_bytes),
                _ => None,
            });
            let pace = take_fault(w, |f| match f {
                Fault::SlowWorker { bytes_per_second } => Some(*bytes_per_second),
                _ => None,
            });
            // The embedded cloud has no VPCs: a well-formed subnet is in the region's first
            // zone, like every volume made without a zone.
            if let Some(bad) = run
                .subnet
                .iter()
                .filter(|s| !s.starts_with("subnet-"))
                .chain(run.security_groups.iter().filter(|g| !g.starts_with("sg-")))
                .next()
            {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterValue",
                    format!("'{bad}' is not a subnet or security group id"),
                ));
            }
            let zone = match &run.subnet {
                Some(_) => zone_of(region, ""),
                None => zone_in(c.action, region, run.availability_zone.as_deref())?,
            };
            let image = match &run.image {
                Some(image) => Some((image, images::launch_volumes(w, c, region, image, &run.instance_type)?)),
                None => None,
            };
            let id: InstanceId = parse_id(c.action, "InternalError", &new_id(w, "i"))?;
            let mut instance = Instance {
                state: "running".into(),
                state_reason: None,
                profile: run.instance_profile.clone(),
                volumes: Vec::new(),
                tags: run.tags.clone(),
                user_data: run.user_data.clone(),
                zone,
                subnet: run.subnet.clone(),
                security_groups: run.security_groups.clone(),
                instance_type: run.instance_type.clone(),
                ready_at: crate::clock::done_at(w),
                terminate_at: None,
                imds_v2_only: run.imds_v2_only,
                boot: bulwark_cloud::InstanceBoot {
                    key_name: run.key_name.clone(),
                    ..Default::default()
                },
                deleted_on_termination: Vec::new(),
            };
            let mut boots_machine = true;
            if let Some((image_id, images::ImageLaunch { image, volumes, fails })) = image {
                let spec = &image.spec;
                instance.boot = bulwark_cloud::InstanceBoot {
                    image: Some(image_id.clone()),
                    architecture: Some(spec.architecture.clone()),
                    boot_mode: spec.boot_mode.clone(),
                    root_device: Some(spec.root_device.clone()),
                    ena_support: spec.ena_support,
                    key_name: run.key_name.clone(),
                };
                if let Some(reason) = fails {
                    // Accepted, then ended at boot: its volumes are never made.
                    instance.state = "terminated".into();
                    instance.state_reason = Some(reason);
                    boots_machine = false;
                } else {
                    for (device, snapshot) in volumes {
                        let volume = launch_volume(w, &account, region, &id, &instance.zone, &device, snapshot)?;
                        instance.volumes.push((volume, device.device.clone()));
                        if device.delete_on_termination {
                            instance.deleted_on_termination.push(device.device);
                        }
                    }
                }
            }
            let info = instance_info(&account, region, &id, &instance);
            remember_token(w, &account, region, run.client_token.as_deref(), id.as_str());
            region_mut(w, &account, region).instances.insert(id, instance);
            Ok((info, boots_machine.then_some((dies, pace))))
        })?;
        let answer = match lost {
            Some(e) => Err(e),
            None => Ok(info.clone()),
        };
        let Some((dies, pace)) = boots else {
            return answer;
        };
        let machine = Arc::new(Machine::new(
            info.id.clone(),
            info.owner.clone(),
            region.clone(),
            dies,
            pace,
        ));
        boot(self, machine, run.user_data.clone());
        answer
    }

    fn terminate_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()> {
        self.call(Action::Ec2TerminateInstances, who, |c, w| {
            let ends = crate::clock::done_at(w);
            let i = instance_acted_on(w, c, region, instance)?;
            // Shutting down, its volumes still attached, until it is terminated
            // (`clock::settle`); volumes attached after launch survive it (DeleteOnTermination
            // is off). Terminating again changes nothing.
            if i.state != "terminated" && i.state != "shutting-down" {
                i.state = "shutting-down".into();
                i.terminate_at = Some(ends);
            }
            if let Some(m) = lock(&self.inner.machines).get(instance) {
                m.stop();
            }
            Ok(())
        })
    }

    fn stop_instance(&self, who: &Credentials, region: &Region, instance: &InstanceId) -> Result<()> {
        self.call(Action::Ec2StopInstances, who, |c, w| {
            let i = instance_acted_on(w, c, region, instance)?;
            match crate::clock::instance_state(i, crate::clock::now()).as_str() {
                "running" | "stopped" => {
                    i.state = "stopped".into();
                    Ok(())
                }
                state => Err(CloudError::new(
                    c.action,
                    ErrorKind::NotPermitted,
                    "IncorrectInstanceState",
                    format!(
                        "This instance '{instance}' is not in a state from which it can be stopped: {state}"
                    ),
                )),
            }
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
        self.call(Action::Ec2ModifyInstanceAttribute, who, |c, w| {
            let i = instance_acted_on(w, c, region, instance)?;
            if !i.volumes.iter().any(|(_, d)| d == device) {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidInstanceAttributeValue",
                    format!("No device is currently mapped at {device}"),
                ));
            }
            i.deleted_on_termination.retain(|d| d != device);
            if delete {
                i.deleted_on_termination.push(device.to_owned());
            }
            Ok(())
        })
    }

    fn register_image(&self, who: &Credentials, region: &Region, image: &RegisterImage) -> Result<ImageId> {
        self.call(Action::Ec2RegisterImage, who, |c, w| {
            let any_image = images::image_arn(region, "*");
            c.check(w, c.action, &any_image, &[], None)?;
            for d in &image.devices {
                c.check(w, c.action, &snapshot_arn(region, &d.snapshot), &[], None)?;
            }
            check_tags(w, c, &image.tags, &any_image)?;
            images::check_register(w, c, region, image)?;
            let id: ImageId = parse_id(c.action, "InternalError", &new_id(w, "ami"))?;
            let ready_at = crate::clock::done_at(w);
            region_mut(w, &c.account().clone(), region).images.insert(
                id.clone(),
                crate::state::Image {
                    spec: image.clone(),
                    ready_at,
                },
            );
            Ok(id)
        })
    }

    fn describe_images(&self, who: &Credentials, region: &Region, ids: &[ImageId]) -> Result<Vec<ImageInfo>> {
        self.call(Action::Ec2DescribeImages, who, |c, w| {
            c.check(w, c.action, "*", &[], None)?;
            ids.iter()
                .map(|id| {
                    Ok(images::image_info(
                        c.account(),
                        region,
                        id,
                        images::own_image(w, c, region, id)?,
                    ))
                })
                .collect()
        })
    }

    fn images_tagged(&self, who: &Credentials, region: &Region, tags: &[Tag]) -> Result<Vec<ImageInfo>> {
        self.call(Action::Ec2DescribeImages, who, |c, w| {
            own_tagged(
                w,
                c,
                region,
                tags,
                |r| &r.images,
                |x| &x.spec.tags,
                images::image_info,
            )
        })
    }

    fn deregister_image(&self, who: &Credentials, region: &Region, image: &ImageId) -> Result<()> {
        self.call(Action::Ec2DeregisterImage, who, |c, w| {
            c.check(w, c.action, &images::image_arn(region, image.as_str()), &[], None)?;
            images::own_image(w, c, region, image)?;
            region_mut(w, &c.account().clone(), region).images.remove(image);
            Ok(())
        })
    }

    fn ebs_default_key(&self, who: &Credentials, region: &Region) -> Result<String> {
        self.call(Action::Ec2GetEbsDefaultKmsKeyId, who, |c, w| {
            c.check(w, c.action, "*", &[], None)?;
            let account = c.account().clone();
            Ok(default_key_arn(w, &account, region))
        })
    }

    fn ebs_encryption_by_default(&self, who: &Credentials, region: &Region) -> Result<bool> {
        self.call(Action::Ec2GetEbsEncryptionByDefault, who, |c, w| {
            c.check(w, c.action, "*", &[], None)?;
            Ok(region_mut(w, &c.account().clone(), region).encryption_by_default)
        })
    }
}

/// A volume RunInstances makes from an image's snapshot, attached to the new instance at its
/// device (with the grant EBS makes on its key for the instance).
fn launch_volume(
    w: &mut World,
    account: &AccountId,
    region: &Region,
    instance: &InstanceId,
    zone: &str,
    device: &bulwark_cloud::ImageDevice,
    snapshot: Snapshot,
) -> Result<VolumeId> {
    let size = device.size_gib.unwrap_or(snapshot.size_gib);
    let performance = device
        .performance
        .or_else(|| bulwark_model::VolumeType::Gp2.performance(size, None, None).ok());
    let id: VolumeId = parse_id(Action::Ec2RunInstances, "InternalError", &new_id(w, "vol"))?;
    if let Some(k) = &snapshot.key {
        grant_for_instance(w, k, region, instance, &id);
    }
    let ready_at = crate::clock::done_at(w);
    let volume = Volume {
        size_gib: size,
        snapshot: Some(device.snapshot.clone()),
        key: snapshot.key,
        attachment: Some((instance.clone(), device.device.clone())),
        tags: Vec::new(),
        lineage: snapshot.lineage,
        blocks: snapshot.blocks,
        zone: zone.to_owned(),
        ready_at,
        attach_at: ready_at,
        detach_at: None,
        performance,
    };
    region_mut(w, account, region).volumes.insert(id.clone(), volume);
    Ok(id)
}
