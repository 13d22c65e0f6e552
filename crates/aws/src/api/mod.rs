//! Every call of the cloud traits, as AWS SDK requests, one module per service; here the
//! clients and the conversions they share.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ec2::types::{
    CreateVolumePermission, CreateVolumePermissionModifications, IamInstanceProfileSpecification,
    InstanceSpecification, InstanceType, Placement, ResourceType, SnapshotAttributeName, TagSpecification,
};
use aws_sdk_kms::primitives::Blob;
use bulwark_cloud::{
    BlockPage, BlockRef, CallerIdentity, CloudError, CopySnapshot, CreateVolume, Credentials, Ebs, Ec2,
    Encryption, Grant, Iam, ImageInfo, InstanceInfo, KeyInfo, KeyManager, Kms, Message, ObjectStore,
    RegisterImage, Result, RoleInfo, RunInstance, SharedCredentials, SnapshotInfo, Sqs, StartSnapshot, Sts,
    Tag, VolumeInfo,
};
use bulwark_model::{AccountId, Action, ImageId, InstanceId, Region, RoleArn, SnapshotId, VolumeId};
use bulwark_storage::Backend;

use crate::errors::{map, missing, url_decode};
use crate::AwsCloud;

mod ebs;
mod ec2;
mod iam;
mod kms;
mod s3;
mod sqs;
mod sts;

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

fn parse<T: std::str::FromStr>(action: Action, what: &str, s: Option<&str>) -> Result<T> {
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
