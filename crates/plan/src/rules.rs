//! The EBS encryption rules, as functions. Each one is a rule of `reference/aws-rules.md`
//! ("KMS keys and EBS"), which summarises the EBS user guide's "Encryption rules" and the
//! CopySnapshot, CreateVolume and ModifySnapshotAttribute API references. The planner asks
//! these functions, never re-derives a rule inline, so that a rule found wrong is fixed here.

use bulwark_model::{AccountId, Estate, KeyRef, Region};

/// The key of a volume created from a snapshot (CreateVolume with `SnapshotId`):
/// - with `KmsKeyId`, the volume is encrypted with that key (also from an unencrypted
///   snapshot, with `Encrypted=true`);
/// - without, a volume from an encrypted snapshot keeps the snapshot's key when the caller
///   owns the snapshot, and gets the caller's default EBS key of the region when the snapshot
///   was shared with it;
/// - a volume from an unencrypted snapshot is encrypted only if encryption by default is on.
pub fn volume_from_snapshot_key(
    estate: &Estate,
    snapshot_key: Option<&KeyRef>,
    snapshot_owner: &AccountId,
    caller: &AccountId,
    region: &Region,
    requested: Option<&KeyRef>,
) -> Option<KeyRef> {
    match (snapshot_key, requested) {
        (_, Some(key)) => Some(key.clone()),
        (Some(key), None) if snapshot_owner == caller => Some(key.clone()),
        (Some(_), None) => Some(estate.default_key(caller, region)),
        (None, None) => default_if_encrypting(estate, caller, region),
    }
}

/// The key of a snapshot copy (CopySnapshot, called in the destination region). A copy can
/// never be decrypted; with `KmsKeyId` it is encrypted with that key; without, a copy of an
/// encrypted snapshot uses the caller's default key of the destination region, except that a
/// copy of one's own snapshot within its region keeps the key; a copy of an unencrypted
/// snapshot is encrypted only if encryption by default is on in the destination.
pub fn copy_key(
    estate: &Estate,
    source_key: Option<&KeyRef>,
    source_owner: &AccountId,
    source_region: &Region,
    caller: &AccountId,
    destination: &Region,
    requested: Option<&KeyRef>,
) -> Option<KeyRef> {
    match (source_key, requested) {
        (_, Some(key)) => Some(key.clone()),
        (Some(key), None) if source_owner == caller && source_region == destination => Some(key.clone()),
        (Some(_), None) => Some(estate.default_key(caller, destination)),
        (None, None) => default_if_encrypting(estate, caller, destination),
    }
}

/// The key of a new empty volume: the requested one, else the default key if encryption by
/// default is on, else none.
pub fn empty_volume_key(
    estate: &Estate,
    caller: &AccountId,
    region: &Region,
    requested: Option<&KeyRef>,
) -> Option<KeyRef> {
    requested
        .cloned()
        .or_else(|| default_if_encrypting(estate, caller, region))
}

/// The key of a snapshot written through the EBS direct APIs without a parent
/// (StartSnapshot): like a new empty volume, the requested key (`Encrypted` with
/// `KmsKeyArn`), else the default key if encryption by default is on, else none.
pub fn written_snapshot_key(
    estate: &Estate,
    caller: &AccountId,
    region: &Region,
    requested: Option<&KeyRef>,
) -> Option<KeyRef> {
    empty_volume_key(estate, caller, region, requested)
}

/// Whether a snapshot under `key` can be shared with another account: not under `aws/ebs`,
/// which AWS refuses with `OperationNotPermitted: Encrypted snapshots with EBS default key
/// cannot be shared`.
pub fn shareable(key: Option<&KeyRef>) -> bool {
    !key.is_some_and(KeyRef::is_aws_managed)
}

fn default_if_encrypting(estate: &Estate, account: &AccountId, region: &Region) -> Option<KeyRef> {
    estate
        .encrypts_by_default(account, region)
        .then(|| estate.default_key(account, region))
}
