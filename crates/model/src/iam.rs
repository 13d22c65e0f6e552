//! IAM's vocabulary: the API actions Bulwark calls or grants ([`Action`], one table for the
//! planner, the policy generator, the evaluator, the clouds and the engine), and policy
//! documents as AWS writes them ([`PolicyDocument`]), typed for both reading and writing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::InvalidId;

/// Declares [`Action`] from one table of `Variant = "service:Name"` rows.
macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// An IAM action: an API call (`ec2:CreateVolume`), or one of the documented wildcards
        /// that policies grant (`kms:ReEncrypt*`). The one list of action names in Bulwark.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action {
            $( $(#[$doc])* #[doc = $name] $variant, )*
        }

        impl Action {
            /// Every action, in the order of the table.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// The action as IAM writes it, `service:Name`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    // STS
    StsAssumeRole = "sts:AssumeRole",
    StsGetCallerIdentity = "sts:GetCallerIdentity",
    StsTagSession = "sts:TagSession",
    // EC2
    Ec2AttachVolume = "ec2:AttachVolume",
    Ec2CopySnapshot = "ec2:CopySnapshot",
    Ec2CreateSnapshot = "ec2:CreateSnapshot",
    Ec2CreateSnapshots = "ec2:CreateSnapshots",
    Ec2CreateTags = "ec2:CreateTags",
    Ec2CreateVolume = "ec2:CreateVolume",
    Ec2DeleteSnapshot = "ec2:DeleteSnapshot",
    Ec2DeleteVolume = "ec2:DeleteVolume",
    Ec2DeregisterImage = "ec2:DeregisterImage",
    Ec2DescribeImages = "ec2:DescribeImages",
    Ec2DescribeInstances = "ec2:DescribeInstances",
    Ec2DescribeSnapshots = "ec2:DescribeSnapshots",
    Ec2DescribeVolumes = "ec2:DescribeVolumes",
    Ec2DetachVolume = "ec2:DetachVolume",
    Ec2GetEbsDefaultKmsKeyId = "ec2:GetEbsDefaultKmsKeyId",
    Ec2GetEbsEncryptionByDefault = "ec2:GetEbsEncryptionByDefault",
    Ec2ModifyEbsDefaultKmsKeyId = "ec2:ModifyEbsDefaultKmsKeyId",
    Ec2ModifyInstanceAttribute = "ec2:ModifyInstanceAttribute",
    Ec2ModifySnapshotAttribute = "ec2:ModifySnapshotAttribute",
    Ec2RegisterImage = "ec2:RegisterImage",
    Ec2RunInstances = "ec2:RunInstances",
    Ec2StopInstances = "ec2:StopInstances",
    Ec2TerminateInstances = "ec2:TerminateInstances",
    // EBS direct APIs
    EbsCompleteSnapshot = "ebs:CompleteSnapshot",
    EbsGetSnapshotBlock = "ebs:GetSnapshotBlock",
    EbsListChangedBlocks = "ebs:ListChangedBlocks",
    EbsListSnapshotBlocks = "ebs:ListSnapshotBlocks",
    EbsPutSnapshotBlock = "ebs:PutSnapshotBlock",
    EbsStartSnapshot = "ebs:StartSnapshot",
    // KMS
    KmsCreateGrant = "kms:CreateGrant",
    KmsDecrypt = "kms:Decrypt",
    KmsDescribeKey = "kms:DescribeKey",
    KmsEncrypt = "kms:Encrypt",
    KmsGenerateDataKey = "kms:GenerateDataKey",
    KmsGenerateDataKeyWithoutPlaintext = "kms:GenerateDataKeyWithoutPlaintext",
    KmsGetKeyPolicy = "kms:GetKeyPolicy",
    KmsListGrants = "kms:ListGrants",
    KmsPutKeyPolicy = "kms:PutKeyPolicy",
    /// Both re-encryption actions, as AWS documents the permissions EBS needs on a key.
    KmsReEncryptAll = "kms:ReEncrypt*",
    KmsReEncryptFrom = "kms:ReEncryptFrom",
    KmsReEncryptTo = "kms:ReEncryptTo",
    KmsRevokeGrant = "kms:RevokeGrant",
    // IAM
    IamAddRoleToInstanceProfile = "iam:AddRoleToInstanceProfile",
    IamCreateInstanceProfile = "iam:CreateInstanceProfile",
    IamCreateRole = "iam:CreateRole",
    IamDeleteInstanceProfile = "iam:DeleteInstanceProfile",
    IamDeleteRole = "iam:DeleteRole",
    IamDeleteRolePolicy = "iam:DeleteRolePolicy",
    IamGetContextKeysForPrincipalPolicy = "iam:GetContextKeysForPrincipalPolicy",
    IamGetInstanceProfile = "iam:GetInstanceProfile",
    IamGetRole = "iam:GetRole",
    IamGetRolePolicy = "iam:GetRolePolicy",
    IamListInstanceProfilesForRole = "iam:ListInstanceProfilesForRole",
    IamListRolePolicies = "iam:ListRolePolicies",
    IamListRoles = "iam:ListRoles",
    IamPassRole = "iam:PassRole",
    IamPutRolePolicy = "iam:PutRolePolicy",
    IamRemoveRoleFromInstanceProfile = "iam:RemoveRoleFromInstanceProfile",
    IamSimulatePrincipalPolicy = "iam:SimulatePrincipalPolicy",
    // SQS
    SqsCreateQueue = "sqs:CreateQueue",
    SqsDeleteMessage = "sqs:DeleteMessage",
    SqsDeleteQueue = "sqs:DeleteQueue",
    SqsGetQueueUrl = "sqs:GetQueueUrl",
    SqsListQueues = "sqs:ListQueues",
    SqsListQueueTags = "sqs:ListQueueTags",
    SqsReceiveMessage = "sqs:ReceiveMessage",
    SqsSendMessage = "sqs:SendMessage",
    SqsSetQueueAttributes = "sqs:SetQueueAttributes",
    // S3
    S3DeleteObject = "s3:DeleteObject",
    S3GetObject = "s3:GetObject",
    S3ListBucket = "s3:ListBucket",
    S3PutObject = "s3:PutObject",
    // The SSM agent's channels, which the documented worker role carries.
    Ec2MessagesAcknowledgeMessage = "ec2messages:AcknowledgeMessage",
    Ec2MessagesDeleteMessage = "ec2messages:DeleteMessage",
    Ec2MessagesFailMessage = "ec2messages:FailMessage",
    Ec2MessagesGetEndpoint = "ec2messages:GetEndpoint",
    Ec2MessagesGetMessages = "ec2messages:GetMessages",
    Ec2MessagesSendReply = "ec2messages:SendReply",
    SsmDescribeAssociation = "ssm:DescribeAssociation",
    SsmDescribeDocument = "ssm:DescribeDocument",
    SsmGetDeployablePatchSnapshotForInstance = "ssm:GetDeployablePatchSnapshotForInstance",
    SsmGetDocument = "ssm:GetDocument",
    SsmGetManifest = "ssm:GetManifest",
    SsmGetParameter = "ssm:GetParameter",
    SsmGetParameters = "ssm:GetParameters",
    SsmListAssociations = "ssm:ListAssociations",
    SsmListInstanceAssociations = "ssm:ListInstanceAssociations",
    SsmPutComplianceItems = "ssm:PutComplianceItems",
    SsmPutConfigurePackageResult = "ssm:PutConfigurePackageResult",
    SsmPutInventory = "ssm:PutInventory",
    SsmUpdateAssociationStatus = "ssm:UpdateAssociationStatus",
    SsmUpdateInstanceAssociationStatus = "ssm:UpdateInstanceAssociationStatus",
    SsmUpdateInstanceInformation = "ssm:UpdateInstanceInformation",
    SsmMessagesCreateControlChannel = "ssmmessages:CreateControlChannel",
    SsmMessagesCreateDataChannel = "ssmmessages:CreateDataChannel",
    SsmMessagesOpenControlChannel = "ssmmessages:OpenControlChannel",
    SsmMessagesOpenDataChannel = "ssmmessages:OpenDataChannel",
}

impl Action {
    /// The service prefix: `ec2` of `ec2:CreateVolume`.
    pub fn service(self) -> &'static str {
        self.as_str().split_once(':').map_or("", |(service, _)| service)
    }

    /// The name without the service: `CreateVolume` of `ec2:CreateVolume`.
    pub fn name(self) -> &'static str {
        self.as_str().split_once(':').map_or("", |(_, name)| name)
    }

    /// Whether the action only reads (Describe, Get, List): such calls change nothing, so a
    /// cloud need not save its state after them and retrying them is always safe.
    pub fn is_read(self) -> bool {
        let name = self.name();
        name.starts_with("Describe") || name.starts_with("Get") || name.starts_with("List")
    }

    /// Whether the action removes what another created: the removals a session's cleanup and
    /// rollback are made of. The one list of them.
    pub fn is_removal(self) -> bool {
        matches!(
            self,
            Action::Ec2DeleteSnapshot
                | Action::Ec2DeleteVolume
                | Action::Ec2DetachVolume
                | Action::Ec2TerminateInstances
                | Action::Ec2ModifySnapshotAttribute
                | Action::Ec2DeregisterImage
                | Action::IamDeleteRole
                | Action::IamDeleteRolePolicy
                | Action::IamDeleteInstanceProfile
                | Action::IamRemoveRoleFromInstanceProfile
                | Action::SqsDeleteQueue
        )
    }
}

// Ordered by name, so that policies list actions alphabetically, as people read them.
impl Ord for Action {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Action {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = InvalidId;

    /// Action names are case-insensitive in IAM.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| InvalidId::new("IAM action", s, "an action Bulwark knows, like ec2:CreateVolume"))
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---- policy documents -------------------------------------------------------------------

/// The policy language version every policy Bulwark writes declares.
pub const POLICY_VERSION: &str = "2012-10-17";

/// An IAM policy document (identity policy, role trust policy, KMS key policy, SQS queue
/// policy), element by element as AWS writes it. Reading one checks its shape (unknown
/// elements are errors: a misspelt `Resouce` would widen a policy); what the elements mean is
/// the evaluator's (`bulwark_cloud::policy`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// `2012-10-17` (or the older `2008-10-17`).
    #[serde(rename = "Version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// An optional id.
    #[serde(rename = "Id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The statements: one object or an array of them.
    #[serde(rename = "Statement", with = "one_or_many")]
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// A document of the current version with these statements.
    pub fn new(statements: Vec<Statement>) -> Self {
        Self {
            version: Some(POLICY_VERSION.to_owned()),
            id: None,
            statements,
        }
    }

    /// Reads a document from JSON, checking its shape; an error names where it is
    /// (`Statement[1].Effect: unknown variant ...`).
    pub fn from_json(json: &str) -> Result<Self, PolicyShapeError> {
        // serde would also take a struct from an array of its fields.
        if !json.trim_start().starts_with('{') && serde_json::from_str::<serde_json::Value>(json).is_ok() {
            return Err(PolicyShapeError("the document must be a JSON object".into()));
        }
        let mut reader = serde_json::Deserializer::from_str(json);
        let document = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                PolicyShapeError(format!("invalid JSON: {inner}"))
            } else if at == "." || at == "Statement" {
                PolicyShapeError(strip_position(&inner.to_string()))
            } else {
                PolicyShapeError(format!("{at}: {}", strip_position(&inner.to_string())))
            }
        })?;
        reader
            .end()
            .map_err(|e| PolicyShapeError(format!("invalid JSON: {e}")))?;
        Ok(document)
    }
}

/// A policy document whose JSON is not a policy's shape: what is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyShapeError(pub String);

/// serde_json's "at line 1 column 40" is noise once the path says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The document as compact JSON, as IAM and KMS take it.
impl fmt::Display for PolicyDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Serializing plain strings and maps cannot fail.
        f.write_str(&serde_json::to_string(self).unwrap_or_default())
    }
}

/// Whether a statement allows or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Allows what it matches.
    Allow,
    /// Denies what it matches, whatever else allows it.
    Deny,
}

/// One statement of a policy document. Exactly one of `action`/`not_action` must be present;
/// at most one of `resource`/`not_resource` and of `principal`/`not_principal` (the evaluator
/// checks these rules and says which is broken).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Statement id.
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Allow or deny.
    #[serde(rename = "Effect")]
    pub effect: Effect,
    /// Who it applies to (resource policies).
    #[serde(rename = "Principal", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principals>,
    /// Who it does not apply to.
    #[serde(rename = "NotPrincipal", default, skip_serializing_if = "Option::is_none")]
    pub not_principal: Option<Principals>,
    /// Action patterns (`ec2:Create*`).
    #[serde(
        rename = "Action",
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub action: Option<Vec<String>>,
    /// Every action but these.
    #[serde(
        rename = "NotAction",
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub not_action: Option<Vec<String>>,
    /// Resource ARN patterns.
    #[serde(
        rename = "Resource",
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub resource: Option<Vec<String>>,
    /// Every resource but these.
    #[serde(
        rename = "NotResource",
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub not_resource: Option<Vec<String>>,
    /// Conditions: operator -> condition key -> values.
    #[serde(rename = "Condition", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<String, BTreeMap<String, ConditionValues>>,
}

impl Statement {
    /// `Allow` of `actions` on `resources`, for identity policies.
    pub fn allow<A: AsRef<str>, R: Into<String>>(
        actions: impl IntoIterator<Item = A>,
        resources: impl IntoIterator<Item = R>,
    ) -> Self {
        Self {
            sid: None,
            effect: Effect::Allow,
            principal: None,
            not_principal: None,
            action: Some(actions.into_iter().map(|a| a.as_ref().to_owned()).collect()),
            not_action: None,
            resource: Some(resources.into_iter().map(Into::into).collect()),
            not_resource: None,
            condition: BTreeMap::new(),
        }
    }

    /// Names the statement.
    pub fn with_sid(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// Limits the statement to `principal` (resource policies).
    pub fn for_principal(mut self, principal: Principals) -> Self {
        self.principal = Some(principal);
        self
    }

    /// Applies the statement to every resource by leaving `Resource` out (trust policies).
    pub fn on_any_resource(mut self) -> Self {
        self.resource = None;
        self
    }

    /// Adds a condition: `operator` on `key` with `values`.
    pub fn when(mut self, operator: &str, key: &str, values: impl IntoIterator<Item = String>) -> Self {
        self.condition
            .entry(operator.to_owned())
            .or_default()
            .insert(key.to_owned(), ConditionValues(values.into_iter().collect()));
        self
    }
}

/// A `Principal` element: `"*"`, or principals by type (`AWS`, `Service`, `Federated`,
/// `CanonicalUser`), each one value or many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principals {
    /// `"*"`: anyone.
    Anyone,
    /// By type: `{"AWS": ["arn:aws:iam::111111111111:root"], "Service": ["ec2.amazonaws.com"]}`.
    ByType(BTreeMap<String, Vec<String>>),
}

impl Principals {
    /// `{"AWS": arn}`.
    pub fn aws(arn: impl Into<String>) -> Self {
        Self::ByType(BTreeMap::from([("AWS".to_owned(), vec![arn.into()])]))
    }

    /// `{"Service": service}`.
    pub fn service(service: impl Into<String>) -> Self {
        Self::ByType(BTreeMap::from([("Service".to_owned(), vec![service.into()])]))
    }
}

impl Serialize for Principals {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Principals::Anyone => s.serialize_str("*"),
            Principals::ByType(types) => {
                let one_or_many: BTreeMap<&String, OneOrMany<'_>> =
                    types.iter().map(|(k, v)| (k, OneOrMany(v))).collect();
                one_or_many.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Principals {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Star(String),
            ByType(BTreeMap<String, StringOrMany>),
        }
        match Raw::deserialize(d)? {
            Raw::Star(s) if s == "*" => Ok(Principals::Anyone),
            Raw::Star(s) => Err(serde::de::Error::custom(format!(
                "Principal must be \"*\" or an object like {{\"AWS\": \"123456789012\"}}, not \"{s}\""
            ))),
            Raw::ByType(types) if types.is_empty() => Err(serde::de::Error::custom(
                "Principal must name at least one principal",
            )),
            Raw::ByType(types) => Ok(Principals::ByType(
                types.into_iter().map(|(k, v)| (k, v.0)).collect(),
            )),
        }
    }
}

/// The values of one condition key: strings, or JSON booleans and numbers as AWS also accepts
/// them (`true` is `"true"`); one value or a non-empty array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionValues(pub Vec<String>);

impl Serialize for ConditionValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OneOrMany(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConditionValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            String(String),
            Bool(bool),
            Number(serde_json::Number),
        }
        impl Scalar {
            fn text(self) -> String {
                match self {
                    Scalar::String(s) => s,
                    Scalar::Bool(b) => b.to_string(),
                    Scalar::Number(n) => n.to_string(),
                }
            }
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(Scalar),
            Many(Vec<Scalar>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(v)) => Ok(ConditionValues(vec![v.text()])),
            Ok(Raw::Many(v)) if !v.is_empty() => {
                Ok(ConditionValues(v.into_iter().map(Scalar::text).collect()))
            }
            _ => Err(serde::de::Error::custom(
                "a condition key needs a string, number, boolean or a non-empty array of them",
            )),
        }
    }
}

/// A list written as its one element when it has one, as AWS writes `Action` and `Resource`.
struct OneOrMany<'a>(&'a [String]);

impl Serialize for OneOrMany<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

/// A string or a non-empty array of strings.
struct StringOrMany(Vec<String>);

impl<'de> Deserialize<'de> for StringOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(s)) => Ok(StringOrMany(vec![s])),
            Ok(Raw::Many(v)) if !v.is_empty() => Ok(StringOrMany(v)),
            _ => Err(serde::de::Error::custom(
                "expected a string or a non-empty array of strings",
            )),
        }
    }
}

mod opt_one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::OneOrMany(v).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Ok(Some(super::StringOrMany::deserialize(d)?.0))
    }
}

mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Statement;

    pub fn serialize<S: Serializer>(v: &[Statement], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Statement>, D::Error> {
        // Statement by statement, so that an error says which statement and which element.
        let value = serde_json::Value::deserialize(d)?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            object @ serde_json::Value::Object(_) => vec![object],
            _ => {
                return Err(serde::de::Error::custom(
                    "Statement must be an object or an array of objects",
                ))
            }
        };
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let sid = item.get("Sid").and_then(|s| s.as_str()).map(str::to_owned);
                serde_path_to_error::deserialize(item).map_err(|e| {
                    let at = match sid {
                        Some(sid) => format!("statement {index} (Sid \"{sid}\")"),
                        None => format!("statement {index}"),
                    };
                    let path = e.path().to_string();
                    let message = super::strip_position(&e.into_inner().to_string());
                    if path == "." {
                        serde::de::Error::custom(format!("{at}: {message}"))
                    } else {
                        serde::de::Error::custom(format!("{at}: {path}: {message}"))
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_case_insensitively_and_is_unique() {
        let mut names = std::collections::BTreeSet::new();
        for action in Action::ALL {
            assert!(names.insert(action.as_str().to_lowercase()), "{action} twice");
            assert_eq!(action.as_str().parse::<Action>().unwrap(), *action);
            assert_eq!(action.as_str().to_uppercase().parse::<Action>().unwrap(), *action);
            assert!(!action.service().is_empty() && !action.name().is_empty());
        }
        assert!("ec2:NoSuchCall".parse::<Action>().is_err());
    }

    #[test]
    fn documents_read_aws_forms_and_write_them_back() {
        let json = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":true}}}}"#;
        let doc = PolicyDocument::from_json(json).unwrap();
        assert_eq!(doc.statements.len(), 1);
        let s = &doc.statements[0];
        assert_eq!(s.action.as_deref(), Some(&["kms:Decrypt".to_owned()][..]));
        assert_eq!(
            s.condition["Bool"]["kms:GrantIsForAWSResource"],
            ConditionValues(vec!["true".into()])
        );
        let back = PolicyDocument::from_json(&doc.to_string()).unwrap();
        assert_eq!(back, doc);
        assert!(PolicyDocument::from_json(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resouce":"*"}]}"#
        )
        .unwrap_err()
        .to_string()
        .contains("Resouce"));
        assert!(PolicyDocument::from_json(r#"{"Statement":[{"Effect":"Maybe","Action":"*"}]}"#).is_err());
        assert!(PolicyDocument::from_json(r#"{"Statement":5}"#).is_err());
        assert!(PolicyDocument::from_json(r#"{"Statement":[{"Effect":"Allow","Action":[]}]}"#).is_err());
        assert!(PolicyDocument::from_json(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Principal":"me"}]}"#
        )
        .is_err());
    }
}
