//! IAM role ARNs and KMS key references.
//!
//! A KMS key is referred to in one of two ways, and the difference decides what AWS allows
//! (`reference/aws-rules.md`, "KMS keys and EBS"):
//! - a customer managed key (CMK), by its key ARN: its key policy can name other accounts;
//! - the AWS managed key `aws/ebs` of one account and region: its policy cannot be changed
//!   and it can never be used from another account, so snapshots under it cannot be shared.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::error::InvalidId;
use crate::ids::{AccountId, Partition, Region};

/// The alias of the AWS managed EBS key.
pub const AWS_EBS_ALIAS: &str = "aws/ebs";

/// The six colon-separated fields of an ARN: `arn:partition:service:region:account:resource`.
struct ArnFields<'a> {
    partition: Partition,
    service: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

impl<'a> ArnFields<'a> {
    fn split(s: &'a str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        Some(Self {
            partition: Partition::from_arn_field(parts.next()?)?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        })
    }
}

/// Characters IAM allows in role names and path segments.
fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// An IAM role ARN, like `arn:aws:iam::123456789012:role/Backup` (a path is allowed:
/// `role/team/Backup`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleArn {
    arn: String,
    account: AccountId,
    partition: Partition,
}

impl RoleArn {
    /// Builds the ARN of role `path_and_name` (`Name` or `path/Name`) in `account`.
    pub fn new(partition: Partition, account: &AccountId, path_and_name: &str) -> Self {
        Self {
            arn: format!("arn:{}:iam::{account}:role/{path_and_name}", partition.as_str()),
            account: account.clone(),
            partition,
        }
    }

    /// The account the role belongs to.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The partition of the ARN.
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// The full ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The role name, without its path.
    pub fn name(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or_default()
    }

    /// The role's IAM path: `/`, or `/team/` for `role/team/Name`.
    pub fn path(&self) -> String {
        let after = self.arn.split_once(":role/").map_or("", |(_, rest)| rest);
        match after.rsplit_once('/') {
            Some((path, _)) => format!("/{path}/"),
            None => "/".to_owned(),
        }
    }
}

impl FromStr for RoleArn {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let invalid = || {
            InvalidId::new(
                "IAM role ARN",
                s,
                "arn:aws:iam::ACCOUNT:role/NAME, like arn:aws:iam::123456789012:role/Backup",
            )
        };
        let f = ArnFields::split(s).ok_or_else(invalid)?;
        let path_and_name = f.resource.strip_prefix("role/").ok_or_else(invalid)?;
        let segments_ok = path_and_name
            .split('/')
            .all(|seg| !seg.is_empty() && seg.chars().all(is_iam_name_char));
        let name_len = path_and_name.rsplit('/').next().map_or(0, str::len);
        if f.service != "iam" || !f.region.is_empty() || !segments_ok || name_len > 64 {
            return Err(invalid());
        }
        let account = f.account.parse::<AccountId>().map_err(|_| invalid())?;
        Ok(Self::new(f.partition, &account, path_and_name))
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl Serialize for RoleArn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.arn)
    }
}

/// A KMS key ARN, like `arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab`
/// (multi-Region keys: `key/mrk-` and 32 hex digits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyArn {
    arn: String,
    account: AccountId,
    region: Region,
}

impl KeyArn {
    /// The account that owns the key (and its key policy).
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The region the key lives in; KMS keys are regional.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The full ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
}

fn is_key_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if let Some(mrk) = id.strip_prefix("mrk-") {
        return mrk.len() == 32 && hex(mrk);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

impl FromStr for KeyArn {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let invalid = || {
            InvalidId::new(
                "KMS key ARN",
                s,
                "arn:aws:kms:REGION:ACCOUNT:key/KEY-ID, like \
                 arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            )
        };
        let f = ArnFields::split(s).ok_or_else(invalid)?;
        let key_id = f.resource.strip_prefix("key/").ok_or_else(invalid)?;
        if f.service != "kms" || !is_key_id(key_id) {
            return Err(invalid());
        }
        let region = f.region.parse::<Region>().map_err(|_| invalid())?;
        let account = f.account.parse::<AccountId>().map_err(|_| invalid())?;
        if region.partition() != f.partition {
            return Err(invalid());
        }
        Ok(Self {
            arn: s.to_owned(),
            account,
            region,
        })
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl Serialize for KeyArn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.arn)
    }
}

/// A KMS key that encrypts EBS data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyRef {
    /// A customer managed key: its policy can allow other accounts.
    Customer(KeyArn),
    /// The AWS managed key `aws/ebs` of one account and region: usable only inside that account.
    AwsManaged {
        /// The account whose `aws/ebs` key this is.
        account: AccountId,
        /// The region of the key.
        region: Region,
    },
}

impl KeyRef {
    /// The account that owns the key.
    pub fn account(&self) -> &AccountId {
        match self {
            KeyRef::Customer(arn) => arn.account(),
            KeyRef::AwsManaged { account, .. } => account,
        }
    }

    /// The region of the key.
    pub fn region(&self) -> &Region {
        match self {
            KeyRef::Customer(arn) => arn.region(),
            KeyRef::AwsManaged { region, .. } => region,
        }
    }

    /// True for `aws/ebs`, whose snapshots AWS never lets another account use.
    pub fn is_aws_managed(&self) -> bool {
        matches!(self, KeyRef::AwsManaged { .. })
    }

    /// Parses a key as users write it, in the context of the account and region where it is
    /// used: a key ARN, or the AWS managed key as `aws/ebs`, `alias/aws/ebs` or its alias ARN
    /// (which must then name that same account and region: no one can use another account's
    /// `aws/ebs`).
    pub fn parse_in(s: &str, account: &AccountId, region: &Region) -> Result<Self, InvalidId> {
        let aws_managed = || KeyRef::AwsManaged {
            account: account.clone(),
            region: region.clone(),
        };
        if s == AWS_EBS_ALIAS || s == "alias/aws/ebs" {
            return Ok(aws_managed());
        }
        if let Some(f) = ArnFields::split(s).filter(|f| f.resource == "alias/aws/ebs") {
            if f.service == "kms" && f.account == account.as_str() && f.region == region.as_str() {
                return Ok(aws_managed());
            }
            return Err(InvalidId::new(
                "KMS key",
                s,
                "the aws/ebs key of the account and region where it is used; another account's \
                 or region's aws/ebs key can never be used",
            ));
        }
        s.parse::<KeyArn>().map(KeyRef::Customer).map_err(|_| {
            InvalidId::new(
                "KMS key",
                s,
                "a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID) or aws/ebs",
            )
        })
    }

    /// The ARN under which the key appears in plans and policies. The AWS managed key is
    /// written as its alias ARN, `arn:aws:kms:REGION:ACCOUNT:alias/aws/ebs`.
    pub fn arn(&self) -> String {
        match self {
            KeyRef::Customer(arn) => arn.to_string(),
            KeyRef::AwsManaged { account, region } => format!(
                "arn:{}:kms:{region}:{account}:alias/{AWS_EBS_ALIAS}",
                region.partition().as_str()
            ),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn())
    }
}

impl FromStr for KeyRef {
    type Err = InvalidId;

    /// Reads a key as [`KeyRef::arn`] writes it: a key ARN, or the alias ARN of `aws/ebs`,
    /// which names its account and region.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(f) = ArnFields::split(s).filter(|f| f.resource == "alias/aws/ebs" && f.service == "kms") {
            let (account, region) = (f.account.parse()?, f.region.parse()?);
            return Ok(KeyRef::AwsManaged { account, region });
        }
        s.parse::<KeyArn>().map(KeyRef::Customer)
    }
}

impl Serialize for KeyRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.arn())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn role_arns_carry_their_account() {
        let role: RoleArn = "arn:aws:iam::222222222222:role/team/Backup".parse().unwrap();
        assert_eq!(role.account().as_str(), "222222222222");
        assert_eq!(role.name(), "Backup");
        assert_eq!(role.path(), "/team/");
        let plain: RoleArn = "arn:aws:iam::222222222222:role/Backup".parse().unwrap();
        assert_eq!(plain.path(), "/");
        for bad in [
            "arn:aws:iam::22222222222:role/Backup",
            "arn:aws:iam:us-east-1:222222222222:role/Backup",
            "arn:aws:iam::222222222222:user/Backup",
            "arn:aws:iam::222222222222:role/",
            "arn:aws:iam::222222222222:role/Bad Name",
            "arn:aws:sts::222222222222:role/Backup",
            "arn:aws:iam::222222222222:role/a//b",
            "Backup",
        ] {
            assert!(bad.parse::<RoleArn>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn key_arns_need_a_real_key_id() {
        let key: KeyArn = KEY.parse().unwrap();
        assert_eq!(key.region().as_str(), "us-east-1");
        assert!(
            "arn:aws:kms:eu-west-1:222222222222:key/mrk-1234abcd12ab34cd56ef1234567890ab"
                .parse::<KeyArn>()
                .is_ok()
        );
        for bad in [
            "arn:aws:kms:us-east-1:222222222222:key/1b2c....",
            "arn:aws:kms:us-east-1:222222222222:alias/backup",
            "arn:aws-cn:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            assert!(bad.parse::<KeyArn>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn aws_ebs_is_the_managed_key_of_the_place_it_is_used() {
        let account: AccountId = "222222222222".parse().unwrap();
        let region: Region = "us-east-1".parse().unwrap();
        for spelling in [
            "aws/ebs",
            "alias/aws/ebs",
            "arn:aws:kms:us-east-1:222222222222:alias/aws/ebs",
        ] {
            let key = KeyRef::parse_in(spelling, &account, &region).unwrap();
            assert!(key.is_aws_managed());
            assert_eq!(key.arn(), "arn:aws:kms:us-east-1:222222222222:alias/aws/ebs");
        }
        let foreign = "arn:aws:kms:us-east-1:333333333333:alias/aws/ebs";
        assert!(KeyRef::parse_in(foreign, &account, &region).is_err());
        assert!(matches!(
            KeyRef::parse_in(KEY, &account, &region),
            Ok(KeyRef::Customer(_))
        ));
    }
}

crate::ids::deserialize_from_str!(RoleArn, KeyArn);

crate::ids::deserialize_from_str!(KeyRef);
