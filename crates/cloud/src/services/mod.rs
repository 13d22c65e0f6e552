//! The calls Bulwark makes, one trait per AWS service. Every call is signed by `who`; regional
//! calls go to `region`. Names and parameters follow the AWS APIs; each method's doc names the
//! IAM action it needs.

mod ebs;
mod ec2;
mod iam;
mod kms;
mod s3;
mod sqs;
mod sts;

pub use ebs::Ebs;
pub use ec2::Ec2;
pub use iam::Iam;
pub use kms::Kms;
pub use s3::ObjectStore;
pub use sqs::Sqs;
pub use sts::Sts;
