//! Bulwark's vocabulary: the identifiers of AWS (account ids, regions, EC2 ids, role and key
//! ARNs), KMS key references, and the estate file that describes what Bulwark protects.
//!
//! Every identifier is parsed and validated here, once; the rest of Bulwark receives typed
//! values and never re-checks a string. Where a rule of AWS shapes a type, the type's docs cite
//! it (`reference/aws-rules.md` and the AWS user guides it summarises).
//!
//! This crate does no I/O and depends on no other Bulwark crate: it reads text it is given.
#![deny(missing_docs)]

mod arn;
mod error;
mod estate;
pub mod iam;
mod ids;
mod volume_type;

pub use arn::{KeyArn, KeyRef, RoleArn, AWS_EBS_ALIAS};
pub use error::{EstateError, InvalidId, Problem};
pub use estate::{
    Account, Appliance, EmbeddedSetup, Estate, Instance, Repository, Volume, WorkerSettings, MAX_VOLUME_GIB,
};
pub use iam::Action;
pub use ids::{AccountId, BucketName, ImageId, InstanceId, Partition, Region, SnapshotId, VolumeId};
pub use volume_type::{Performance, Refused, VolumeType};
