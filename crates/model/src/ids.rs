//! Account ids, regions and EC2 resource ids: parsed once, valid forever after.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::InvalidId;

/// A 12-digit AWS account id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// The id as AWS writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::new("account id", s, "12 digits, like 123456789012"))
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The AWS partition a region belongs to; ARNs carry it (`arn:aws:...`, `arn:aws-cn:...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    /// The commercial regions.
    Aws,
    /// China (Beijing, Ningxia).
    AwsCn,
    /// AWS GovCloud (US).
    AwsUsGov,
}

impl Partition {
    /// The partition as written in ARNs.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// Parses the partition field of an ARN.
    pub fn from_arn_field(s: &str) -> Option<Self> {
        [Partition::Aws, Partition::AwsCn, Partition::AwsUsGov]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The regions Bulwark knows. A region outside this list is refused, because a typo
/// (`us-est-1`) would otherwise yield a plan for a region that does not exist. A new AWS
/// region is one line here.
const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// An AWS region, like `eu-west-1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    /// The region code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition whose ARNs name resources of this region.
    pub fn partition(&self) -> Partition {
        if self.0.starts_with("cn-") {
            Partition::AwsCn
        } else if self.0.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }
}

impl FromStr for Region {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if KNOWN_REGIONS.contains(&s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::new(
                "region",
                s,
                "an AWS region code, like us-east-1 or eu-west-1",
            ))
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares an EC2 resource id type: a prefix, a dash, then 8 or 17 lowercase hex digits.
macro_rules! ec2_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as AWS writes it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let hex = s.strip_prefix(concat!($prefix, "-")).unwrap_or("");
                let hex_ok = matches!(hex.len(), 8 | 17)
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if hex_ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId::new(
                        $kind,
                        s,
                        concat!("'", $prefix, "-' and 8 or 17 lowercase hex digits, like ", $prefix, "-0123456789abcdef0"),
                    ))
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ec2_id!(
    /// An EC2 instance id, like `i-0123456789abcdef0`.
    InstanceId,
    "i",
    "instance id"
);
ec2_id!(
    /// An EBS volume id, like `vol-0123456789abcdef0`.
    VolumeId,
    "vol",
    "volume id"
);
ec2_id!(
    /// An EBS snapshot id, like `snap-0123456789abcdef0`.
    SnapshotId,
    "snap",
    "snapshot id"
);
ec2_id!(
    /// An Amazon Machine Image id, like `ami-0123456789abcdef0`.
    ImageId,
    "ami",
    "image id"
);

/// An S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BucketName(String);

impl BucketName {
    /// The bucket name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BucketName {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let ok = (3..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && edge_ok(s.bytes().next())
            && edge_ok(s.bytes().last())
            && !s.contains("..");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::new(
                "S3 bucket name",
                s,
                "3 to 63 lowercase letters, digits, dots and hyphens, like bulwark-backups",
            ))
        }
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!("123456789012".parse::<AccountId>().is_ok());
        for bad in ["12345678901", "1234567890123", "12345678901a", "", " 23456789012"] {
            assert!(bad.parse::<AccountId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regions_are_known_codes_with_their_partition() {
        assert_eq!(
            "eu-west-1".parse::<Region>().map(|r| r.partition()),
            Ok(Partition::Aws)
        );
        assert_eq!(
            "cn-north-1".parse::<Region>().map(|r| r.partition()),
            Ok(Partition::AwsCn)
        );
        assert_eq!(
            "us-gov-west-1".parse::<Region>().map(|r| r.partition()),
            Ok(Partition::AwsUsGov)
        );
        for bad in ["us-est-1", "US-EAST-1", "us-east-1 ", "", "global"] {
            assert!(bad.parse::<Region>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ec2_ids_have_their_prefix_and_8_or_17_hex_digits() {
        assert!("i-0123456789abcdef0".parse::<InstanceId>().is_ok());
        assert!("i-01234567".parse::<InstanceId>().is_ok());
        assert!("vol-0123456789abcdef0".parse::<VolumeId>().is_ok());
        assert!("snap-0123456789abcdef0".parse::<SnapshotId>().is_ok());
        for bad in [
            "i-0123456789ABCDEF0",
            "i-012345678",
            "vol-0123456789abcdef0",
            "i-",
            "0123456789abcdef0",
        ] {
            assert!(bad.parse::<InstanceId>().is_err(), "{bad:?} accepted");
        }
        let err = "vol-xyz".parse::<VolumeId>().unwrap_err();
        assert!("bulwark-backups.eu".parse::<BucketName>().is_ok());
        for bad in ["ab", "Bulwark", "-bulwark", "bulwark-", "bul..wark", "bul_wark"] {
            assert!(bad.parse::<BucketName>().is_err(), "{bad:?} accepted");
        }
        assert!(err.to_string().contains("vol-0123456789abcdef0"), "{err}");
    }
}

/// Implements `Deserialize` through `FromStr`, so that every identifier read from JSON is
/// validated exactly as one read from the command line.
macro_rules! deserialize_from_str {
    ($($name:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use deserialize_from_str;

deserialize_from_str!(AccountId, Region, InstanceId, VolumeId, SnapshotId, ImageId, BucketName);
