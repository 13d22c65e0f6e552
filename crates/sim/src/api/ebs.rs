//! The EBS direct APIs: listing, reading and writing snapshot blocks, with their checksums and key rules.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Ebs for Sim {
    fn list_snapshot_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage> {
        self.call(Action::EbsListSnapshotBlocks, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let (_, s) = readable_snapshot(w, c, region, snapshot)?;
            if let Some(k) = &s.key {
                direct_key_use(w, c, k, &[Action::KmsDecrypt])?;
            }
            let indexes: Vec<u64> = s.blocks.keys().copied().collect();
            page(c.action, snapshot, &indexes, s.size_gib, next_token)
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
        self.call(Action::EbsListChangedBlocks, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, first), &[], None)?;
            c.check(w, c.action, &snapshot_arn(region, second), &[], None)?;
            let (_, a) = readable_snapshot(w, c, region, first)?;
            let (_, b) = readable_snapshot(w, c, region, second)?;
            // The listing of an encrypted snapshot is for a caller that may decrypt it.
            for k in [&a.key, &b.key].into_iter().flatten() {
                direct_key_use(w, c, k, &[Action::KmsDecrypt])?;
            }
            if a.lineage != b.lineage {
                return Err(validation(
                    c.action,
                    "UNRELATED_SNAPSHOTS",
                    format!("{first} and {second} are not of the same lineage"),
                ));
            }
            let mut indexes: Vec<u64> = b
                .blocks
                .iter()
                .filter(|(i, h)| a.blocks.get(i) != Some(h))
                .map(|(i, _)| *i)
                .collect();
            indexes.extend(a.blocks.keys().filter(|i| !b.blocks.contains_key(i)));
            indexes.sort_unstable();
            page(c.action, second, &indexes, b.size_gib, next_token)
        })
    }

    fn get_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        block: &BlockRef,
    ) -> Result<(Vec<u8>, String)> {
        let hash = self.call(Action::EbsGetSnapshotBlock, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let (_, s) = readable_snapshot(w, c, region, snapshot)?;
            if block.token != block_token(snapshot, block.index) {
                return Err(validation(
                    c.action,
                    "INVALID_BLOCK_TOKEN",
                    "the block token is not one a listing of this snapshot returned",
                ));
            }
            if let Some(k) = &s.key {
                direct_key_use(w, c, k, &[Action::KmsDecrypt])?;
            }
            Ok(s.blocks.get(&block.index).copied())
        })?;
        let mut data = vec![0u8; EBS_BLOCK_SIZE as usize];
        self.inner.store.read(hash.as_ref(), &mut data).map_err(|e| {
            CloudError::new(
                Action::EbsGetSnapshotBlock,
                ErrorKind::Unavailable,
                "InternalServerException",
                e.to_string(),
            )
        })?;
        let checksum = block_checksum(&data);
        Ok((data, checksum))
    }

    fn start_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        start: &StartSnapshot,
    ) -> Result<SnapshotId> {
        self.call(Action::EbsStartSnapshot, who, |c, w| {
            let account = c.account().clone();
            if let Some(id) = made_with(w, &account, region, start.client_token.as_deref()) {
                // The same start again (its first answer was lost): the same snapshot.
                return parse_id(c.action, "InternalError", &id);
            }
            let any_snapshot = format!("arn:aws:ec2:{region}::snapshot/*");
            c.check(w, c.action, &any_snapshot, &[], None)?;
            let a = c.action;
            if start.volume_size_gib == 0 || start.volume_size_gib > bulwark_model::MAX_VOLUME_GIB {
                return Err(validation(
                    a,
                    "INVALID_VOLUME_SIZE",
                    "the volume size must be 1 to 65536 GiB",
                ));
            }
            if let Some(k) = &start.kms_key_arn {
                if !k.starts_with("arn:aws:kms:") || !k.contains(":key/") {
                    return Err(validation(
                        a,
                        "INVALID_CUSTOMER_KEY",
                        format!("KmsKeyArn must be a key ARN, not {k}"),
                    ));
                }
            }
            let parent = match &start.parent {
                Some(p) => Some(readable_snapshot(w, c, region, p)?.1),
                None => None,
            };
            let by_default = region_mut(w, &account, region).encryption_by_default;
            let key = match (&parent, &start.kms_key_arn) {
                (Some(_), _) if start.encrypted => {
                    return Err(validation(
                        a,
                        "INVALID_PARAMETER_VALUE",
                        "Encrypted cannot be given with ParentSnapshotId",
                    ))
                }
                (Some(p), Some(_)) if p.key.is_some() => {
                    return Err(validation(
                        a,
                        "INVALID_PARAMETER_VALUE",
                        "an encrypted parent keeps its key: KmsKeyArn cannot be given",
                    ))
                }
                (Some(p), None) if p.key.is_none() && by_default => {
                    return Err(validation(
                        a,
                        "INVALID_PARAMETER_VALUE",
                        "encryption by default is on: the parent snapshot must be encrypted",
                    ))
                }
                (Some(p), None) => p.key.clone(),
                // The EBS direct APIs answer a key they cannot find with their own code.
                (_, Some(k)) => Some(
                    resolve_key_arn(w, c, region, k)
                        .map_err(|e| validation(a, "INVALID_CUSTOMER_KEY", e.message))?,
                ),
                (None, None) if start.encrypted || by_default => Some(default_key_arn(w, &account, region)),
                (None, None) => None,
            };
            if let Some(k) = &key {
                direct_key_use(
                    w,
                    c,
                    k,
                    &[
                        Action::KmsGenerateDataKeyWithoutPlaintext,
                        Action::KmsGenerateDataKey,
                        Action::KmsEncrypt,
                        Action::KmsDecrypt,
                        Action::KmsDescribeKey,
                        Action::KmsCreateGrant,
                    ],
                )?;
            }
            let pending = w.accounts.get(&account).map_or(0, |a| {
                a.regions
                    .values()
                    .flat_map(|r| r.snapshots.values())
                    .filter(|s| s.state == "pending")
                    .count()
            });
            if pending >= 100 {
                return Err(CloudError::new(
                    a,
                    ErrorKind::Throttled,
                    "ServiceQuotaExceededException",
                    "100 pending snapshots per account",
                ));
            }
            let lineage = match &parent {
                Some(p) => p.lineage,
                None => {
                    w.next_id += 1;
                    w.next_id
                }
            };
            let id: SnapshotId = parse_id(a, "InternalError", &new_id(w, "snap"))?;
            region_mut(w, &account, region).snapshots.insert(
                id.clone(),
                Snapshot {
                    volume: parse_id(a, "InternalError", "vol-ffffffff")?,
                    size_gib: start.volume_size_gib,
                    key,
                    shared_with: Vec::new(),
                    state: "pending".into(),
                    tags: start.tags.clone(),
                    lineage,
                    ready_at: 0,
                    blocks: parent.map(|p| p.blocks).unwrap_or_default(),
                    written: Default::default(),
                },
            );
            remember_token(w, &account, region, start.client_token.as_deref(), id.as_str());
            Ok(id)
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
        let action = Action::EbsPutSnapshotBlock;
        if data.len() as u64 != EBS_BLOCK_SIZE {
            return Err(validation(
                action,
                "INVALID_BLOCK",
                format!("a block has {EBS_BLOCK_SIZE} bytes, not {}", data.len()),
            ));
        }
        if block_checksum(data) != checksum {
            return Err(validation(
                action,
                "INVALID_CHECKSUM",
                "the checksum does not match the data",
            ));
        }
        let hash = self.inner.store.put(data).map_err(|e| {
            CloudError::new(
                action,
                ErrorKind::Unavailable,
                "InternalServerException",
                e.to_string(),
            )
        })?;
        self.call(action, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let s = own_snapshot(w, c, region, snapshot)?;
            if s.state != "pending" {
                return Err(validation(
                    c.action,
                    "INVALID_SNAPSHOT_STATE",
                    format!("snapshot {snapshot} is {}", s.state),
                ));
            }
            if index >= (u64::from(s.size_gib) << 30) / EBS_BLOCK_SIZE {
                return Err(validation(
                    c.action,
                    "INVALID_BLOCK_INDEX",
                    format!("block {index} is past the end of the volume"),
                ));
            }
            let owner = c.account().clone();
            crate::lock(&self.inner.shared.unsaved)
                .snapshots
                .entry((owner, region.clone(), snapshot.clone()))
                .or_default()
                .insert(index, (hash, checksum.to_owned()));
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
        self.call(Action::EbsCompleteSnapshot, who, |c, w| {
            c.check(w, c.action, &snapshot_arn(region, snapshot), &[], None)?;
            let ready = crate::clock::done_at(w);
            let s = own_snapshot(w, c, region, snapshot)?;
            if s.state != "pending" {
                return Err(validation(
                    c.action,
                    "INVALID_SNAPSHOT_STATE",
                    format!("snapshot {snapshot} is {}", s.state),
                ));
            }
            if s.written.len() as u64 != changed_blocks {
                return Err(validation(
                    c.action,
                    "INVALID_PARAMETER_VALUE",
                    format!(
                        "{changed_blocks} changed blocks declared, {} written",
                        s.written.len()
                    ),
                ));
            }
            let mut all = Vec::new();
            for sum in s.written.values() {
                all.push(decode(sum).unwrap_or_default());
            }
            if linear_checksum(all.iter().map(Vec::as_slice)) != checksum {
                return Err(validation(
                    c.action,
                    "INVALID_CHECKSUM",
                    "the linear checksum does not match the blocks written",
                ));
            }
            s.written.clear();
            s.state = "completed".into();
            // Completed, it is readable once EBS has made it so.
            s.ready_at = ready;
            Ok(())
        })
    }
}
