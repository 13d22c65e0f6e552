use bulwark_model::{Region, SnapshotId};

use crate::{BlockPage, BlockRef, Credentials, Result, StartSnapshot};

/// The EBS direct APIs: the blocks of snapshots, read and written without a volume.
pub trait Ebs: Send + Sync {
    /// `ebs:ListSnapshotBlocks`: the written blocks of a completed snapshot, a page at a time.
    fn list_snapshot_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage>;
    /// `ebs:ListChangedBlocks`: the blocks of `second` that differ from `first`, which must
    /// be of the same lineage.
    fn list_changed_blocks(
        &self,
        who: &Credentials,
        region: &Region,
        first: &SnapshotId,
        second: &SnapshotId,
        next_token: Option<&str>,
    ) -> Result<BlockPage>;
    /// `ebs:GetSnapshotBlock`: the block's data and its SHA-256 checksum (base64).
    fn get_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        block: &BlockRef,
    ) -> Result<(Vec<u8>, String)>;
    /// `ebs:StartSnapshot`.
    fn start_snapshot(&self, who: &Credentials, region: &Region, start: &StartSnapshot)
        -> Result<SnapshotId>;
    /// `ebs:PutSnapshotBlock` with the data's SHA-256 checksum (base64).
    fn put_snapshot_block(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        index: u64,
        data: &[u8],
        checksum: &str,
    ) -> Result<()>;
    /// `ebs:CompleteSnapshot` with the number of blocks written and the linear checksum
    /// (SHA-256 over the block checksums in index order, base64).
    fn complete_snapshot(
        &self,
        who: &Credentials,
        region: &Region,
        snapshot: &SnapshotId,
        changed_blocks: u64,
        checksum: &str,
    ) -> Result<()>;
}
