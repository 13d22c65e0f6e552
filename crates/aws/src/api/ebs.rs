//! The EBS direct APIs through the SDK; block calls run as runtime tasks.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Ebs for AwsCloud {
    fn list_snapshot_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage> {
        let a = Action::EbsListSnapshotBlocks;
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
        let a = Action::EbsListChangedBlocks;
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
        let a = Action::EbsGetSnapshotBlock;
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
        let a = Action::EbsStartSnapshot;
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
                .set_client_token(start.client_token.clone())
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
        let a = Action::EbsPutSnapshotBlock;
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
        let a = Action::EbsCompleteSnapshot;
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
}
