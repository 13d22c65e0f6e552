//! The AWS rules that shape answers, beyond authorization: which key a new volume or copy gets,
//! how keys are named, the AWS managed key `aws/ebs` of every account and region.
//! Source: `reference/aws-rules.md` ("KMS keys and EBS").

use bulwark_cloud::{CloudError, ErrorKind};
use bulwark_model::{AccountId, Action, Region, VolumeId};

use crate::auth::{key_arn, Caller};
use crate::state::{Key, RegionState, World};

/// The KMS permissions EBS uses on a caller's behalf whenever it encrypts or decrypts with a
/// key (creating a volume or a copy, attaching a volume), as the EBS user guide lists them.
/// Written from AWS's documentation, apart from the planner's list, so each checks the other.
pub(crate) const EBS_KEY_ACTIONS: &[Action] = &[
    Action::KmsCreateGrant,
    Action::KmsDecrypt,
    Action::KmsDescribeKey,
    Action::KmsGenerateDataKeyWithoutPlaintext,
    Action::KmsReEncryptFrom,
];

/// The key policy AWS gives an AWS managed EBS key: every principal of the account may use it,
/// through EBS only; nobody outside the account may.
fn aws_ebs_policy(account: &AccountId, region: &Region) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "auto-ebs-2",
        "Statement": [
            {
                "Sid": "Allow access through EBS for all principals in the account that are authorized to use EBS",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [Action::KmsEncrypt, Action::KmsDecrypt, Action::KmsReEncryptAll, "kms:GenerateDataKey*", Action::KmsCreateGrant, Action::KmsDescribeKey],
                "Resource": "*",
                "Condition": {"StringEquals": {
                    "kms:CallerAccount": account.as_str(),
                    "kms:ViaService": format!("ec2.{region}.amazonaws.com")
                }}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", Action::KmsRevokeGrant],
                "Resource": "*"
            }
        ]
    })
    .to_string()
}

/// The region of an account, created on first use.
pub(crate) fn region_mut<'w>(
    world: &'w mut World,
    account: &AccountId,
    region: &Region,
) -> &'w mut RegionState {
    world
        .accounts
        .entry(account.clone())
        .or_default()
        .regions
        .entry(region.clone())
        .or_default()
}

/// A new id: `prefix-` and 17 hex digits.
pub(crate) fn new_id(world: &mut World, prefix: &str) -> String {
    world.next_id += 1;
    format!("{prefix}-{:017x}", 0x0b00_0000_0000_0000_u64 + world.next_id)
}

/// The id of the AWS managed key `aws/ebs` of an account and region, created on first use.
pub(crate) fn aws_ebs_key(world: &mut World, account: &AccountId, region: &Region) -> String {
    if let Some(id) = region_mut(world, account, region).aliases.get("alias/aws/ebs") {
        return id.clone();
    }
    world.next_id += 1;
    let id = format!("{:08x}-0000-4000-8000-{:012x}", world.next_id, world.next_id);
    let material = hex::encode(crate::admin::random_bytes::<32>());
    let r = region_mut(world, account, region);
    r.keys.insert(
        id.clone(),
        Key {
            id: id.clone(),
            aws_managed: true,
            state: "Enabled".into(),
            spec: "SYMMETRIC_DEFAULT".into(),
            policy: aws_ebs_policy(account, region),
            material,
            grants: Vec::new(),
        },
    );
    r.aliases.insert("alias/aws/ebs".into(), id.clone());
    id
}

/// Resolves a key reference as KMS does: a key id or alias name in the caller's account, or a
/// key ARN or alias ARN of any account. Answers the key's owner and id.
pub(crate) fn resolve_key(
    world: &mut World,
    action: Action,
    caller: &AccountId,
    region: &Region,
    reference: &str,
) -> Result<(AccountId, String), CloudError> {
    let not_found = || {
        let code = if action.service() == "kms" {
            "NotFoundException"
        } else {
            "InvalidKMSKey.Id"
        };
        CloudError::not_found(
            action,
            code,
            format!("Key '{reference}' does not exist in {region}"),
        )
    };
    let (account, name) = match reference.strip_prefix("arn:aws:kms:") {
        Some(rest) => {
            let mut parts = rest.splitn(3, ':');
            let (r, a, name) = (parts.next(), parts.next(), parts.next());
            if r != Some(region.as_str()) {
                return Err(CloudError::invalid(
                    action,
                    "InvalidParameterValue",
                    format!("key {reference} is not in {region}: KMS keys are regional"),
                ));
            }
            let account: AccountId = a.and_then(|a| a.parse().ok()).ok_or_else(not_found)?;
            (account, name.ok_or_else(not_found)?.to_owned())
        }
        None => (caller.clone(), reference.to_owned()),
    };
    if name == "alias/aws/ebs" {
        return Ok((account.clone(), aws_ebs_key(world, &account, region)));
    }
    let r = region_mut(world, &account, region);
    let id = match name.strip_prefix("key/") {
        Some(id) => id.to_owned(),
        None if name.starts_with("alias/") => r.aliases.get(&name).cloned().ok_or_else(not_found)?,
        None => name,
    };
    if r.keys.contains_key(&id) {
        Ok((account, id))
    } else {
        Err(not_found())
    }
}

/// The default EBS key of an account and region (the AWS managed key unless changed).
pub(crate) fn default_key(world: &mut World, account: &AccountId, region: &Region) -> (AccountId, String) {
    match region_mut(world, account, region).default_key.clone() {
        Some(id) => (account.clone(), id),
        None => (account.clone(), aws_ebs_key(world, account, region)),
    }
}

/// The key record of `(owner, id)`.
pub(crate) fn key<'w>(world: &'w World, owner: &AccountId, region: &Region, id: &str) -> Option<&'w Key> {
    world.accounts.get(owner)?.regions.get(region)?.keys.get(id)
}

/// Checks that EBS may use a key for the caller: a usable symmetric key, and every KMS action
/// EBS needs allowed by the key policy (and, across accounts or where the policy delegates to
/// IAM, the caller's IAM policies).
pub(crate) fn ebs_may_use(
    world: &World,
    caller: &Caller,
    owner: &AccountId,
    region: &Region,
    id: &str,
) -> Result<(), CloudError> {
    let Some(key) = key(world, owner, region, id) else {
        return Err(CloudError::not_found(
            caller.action,
            "InvalidKMSKey.Id",
            format!("key {} does not exist", key_arn(owner, region, id)),
        ));
    };
    if key.spec != "SYMMETRIC_DEFAULT" {
        return Err(CloudError::invalid(
            caller.action,
            "InvalidParameterValue",
            format!(
                "key {} is asymmetric; EBS accepts only symmetric keys",
                key_arn(owner, region, id)
            ),
        ));
    }
    if key.state != "Enabled" {
        return Err(CloudError::new(
            caller.action,
            ErrorKind::NotPermitted,
            "IncorrectState",
            format!("key {} is {}", key_arn(owner, region, id), key.state),
        ));
    }
    for action in EBS_KEY_ACTIONS {
        caller.check_key(world, owner, region, key, *action, true)?;
    }
    Ok(())
}

/// Removes the grants EBS made for a volume's attachment: it made them for the instance.
pub(crate) fn retire_grants(world: &mut World, volume: &VolumeId) {
    for a in world.accounts.values_mut() {
        for r in a.regions.values_mut() {
            for k in r.keys.values_mut() {
                k.grants.retain(|g| g.for_volume.as_ref() != Some(volume));
            }
        }
    }
}
