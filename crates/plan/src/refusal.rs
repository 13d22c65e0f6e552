//! Refusals: the plan AWS would reject, rejected before anything runs.

use std::fmt;

use serde::Serialize;

/// Why an operation cannot be planned. Codes are stable: scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalCode {
    /// A snapshot encrypted with `aws/ebs` would have to be shared with another account;
    /// AWS answers `OperationNotPermitted`.
    AwsManagedKeyNotShareable,
    /// The operation needs a role the estate does not define for an account.
    RoleNotConfigured,
    /// Workers in a production account need that account's worker role.
    WorkerRoleNotConfigured,
    /// Image-level operations need a repository.
    RepositoryNotConfigured,
    /// The target key is not in the target region (KMS keys are regional).
    KeyNotInTargetRegion,
    /// The instance is not in the estate.
    UnknownInstance,
    /// The target account is not in the estate.
    UnknownAccount,
    /// The EBS direct APIs take a key by its ARN, which a plan knows only for customer
    /// managed keys: `aws/ebs` can encrypt a written snapshot only as the region's default
    /// EBS key.
    AwsManagedKeyNotDefault,
    /// A retention run was given no restore point to delete.
    NothingToExpire,
    /// A volume restore names no volume, or a volume the instance does not have.
    UnknownVolume,
    /// A volume restore's availability zone is not in the target region.
    ZoneNotInTargetRegion,
    /// A volume restore's attachment cannot be made: a device name EC2 refuses, one device
    /// per volume missing, or a zone other than the instance's.
    BadAttachment,
    /// A volume restore's type, IOPS or throughput is one CreateVolume refuses for a volume
    /// of that size.
    BadVolumeType,
    /// A restored instance's subnet or security group is not an id EC2 takes.
    BadNetwork,
}

impl RefusalCode {
    /// The code as written in JSON and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::AwsManagedKeyNotShareable => "aws-managed-key-not-shareable",
            RefusalCode::RoleNotConfigured => "role-not-configured",
            RefusalCode::WorkerRoleNotConfigured => "worker-role-not-configured",
            RefusalCode::RepositoryNotConfigured => "repository-not-configured",
            RefusalCode::KeyNotInTargetRegion => "key-not-in-target-region",
            RefusalCode::UnknownInstance => "unknown-instance",
            RefusalCode::UnknownAccount => "unknown-account",
            RefusalCode::AwsManagedKeyNotDefault => "aws-managed-key-not-default",
            RefusalCode::NothingToExpire => "nothing-to-expire",
            RefusalCode::UnknownVolume => "unknown-volume",
            RefusalCode::ZoneNotInTargetRegion => "zone-not-in-target-region",
            RefusalCode::BadAttachment => "bad-attachment",
            RefusalCode::BadVolumeType => "bad-volume-type",
            RefusalCode::BadNetwork => "bad-network",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused operation: what AWS would reject, and what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Stable code.
    pub code: RefusalCode,
    /// What is wrong.
    pub message: String,
    /// What to change so that the operation can run.
    pub remedy: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    pub(crate) fn new(code: RefusalCode, message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            remedy: remedy.into(),
        }
    }
}
