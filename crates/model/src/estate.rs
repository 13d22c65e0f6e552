//! The estate file: the accounts, roles, keys and instances Bulwark protects.
//!
//! The file is TOML (documented with examples in `docs/estate.md`). It is read in two stages,
//! as ripgrep does with its flags: serde reads raw strings with their positions, then every
//! value is validated into the types of this crate. All problems are collected, each with its
//! line and field, so one run tells the user everything to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::arn::{KeyArn, KeyRef, RoleArn};
use crate::error::{EstateError, InvalidId, Problem};
use crate::ids::{AccountId, BucketName, InstanceId, Partition, Region, VolumeId};

/// Largest EBS volume, in GiB (io2 Block Express and the EBS direct APIs allow 64 TiB).
pub const MAX_VOLUME_GIB: u32 = 65_536;

/// A validated estate: everything the planner needs to know about the AWS environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estate {
    /// The backup appliance and its account.
    pub appliance: Appliance,
    /// The production accounts, by id.
    pub accounts: BTreeMap<AccountId, Account>,
    /// Default EBS encryption keys that are not `aws/ebs`, per account and region.
    pub default_keys: BTreeMap<(AccountId, Region), KeyRef>,
    /// Account and region pairs where EBS encryption by default is on.
    pub encryption_by_default: BTreeSet<(AccountId, Region)>,
    /// The protected instances.
    pub instances: Vec<Instance>,
    /// Where image-level backups are kept, if configured.
    pub repository: Option<Repository>,
    /// How workers run, per account and region where it is not AWS's default.
    pub workers: BTreeMap<(AccountId, Region), WorkerSettings>,
    /// What only the embedded cloud uses to build the estate; plans ignore it.
    pub embedded: EmbeddedSetup,
}

/// How workers run in one account and region (`[workers."ACCOUNT/REGION"]`): their network
/// and their size. Without settings a worker gets the default VPC's subnet and security group
/// and a size chosen by the data it moves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The subnet workers launch in (`subnet-...`); its availability zone is the workers'.
    pub subnet: Option<String>,
    /// Their security groups (`sg-...`): workers need outbound HTTPS to AWS only.
    pub security_groups: Vec<String>,
    /// An instance type that replaces the one chosen by size.
    pub instance_type: Option<String>,
    /// Tags added to workers (cost allocation, ownership).
    pub tags: BTreeMap<String, String>,
}

/// The `[embedded]` section: how `bulwark embedded init` builds the estate in the embedded
/// cloud, beyond what the rest of the file says. Every policy given here replaces the one
/// Bulwark would generate, so that the embedded cloud can hold an estate's real policies and
/// `bulwark check` and sessions can be tried against them before running on AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedSetup {
    /// Data written into each protected volume, in MiB.
    pub data_mib: Option<u32>,
    /// Whole key policies (JSON), by key.
    pub key_policies: BTreeMap<KeyArn, String>,
    /// Identity policies (JSON), by role.
    pub role_policies: BTreeMap<RoleArn, String>,
    /// Trust policies (JSON), by role.
    pub trust_policies: BTreeMap<RoleArn, String>,
}

/// The backup appliance: the backup account and the roles it uses there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appliance {
    /// The backup account: where the appliance runs and where workers go by default.
    pub account: AccountId,
    /// The role that deploys workers in the backup account and creates their temporary roles.
    pub worker_deployment_role: RoleArn,
    /// The identity the appliance itself runs as; `None` means any principal of the backup
    /// account that its IAM policies allow (trust policies then name the account).
    pub role: Option<RoleArn>,
}

impl Appliance {
    /// The principal that assumes roles on the appliance's behalf, as an ARN: its role, or the
    /// backup account's root (meaning "principals of that account").
    pub fn principal_arn(&self) -> String {
        match &self.role {
            Some(role) => role.to_string(),
            None => format!(
                "arn:{}:iam::{}:root",
                self.worker_deployment_role.partition().as_str(),
                self.account
            ),
        }
    }
}

/// A production account and the roles Bulwark may assume in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account id.
    pub id: AccountId,
    /// Creates, shares and copies snapshots; deploys workers there for backups.
    pub backup_role: Option<RoleArn>,
    /// Creates restored volumes and instances; deploys workers there for restores.
    pub restore_role: Option<RoleArn>,
    /// Pre-configured role attached to workers deployed in this account (never removed).
    pub worker_role: Option<RoleArn>,
    /// The `sts:ExternalId` the account's role trust policies require, if any.
    pub external_id: Option<String>,
}

/// A protected EC2 instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance id.
    pub id: InstanceId,
    /// The account that owns it.
    pub account: AccountId,
    /// Its region.
    pub region: Region,
    /// Its EBS volumes, in device order.
    pub volumes: Vec<Volume>,
    /// Its tags (policies select instances by them).
    pub tags: BTreeMap<String, String>,
}

/// An EBS volume of a protected instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The volume id.
    pub id: VolumeId,
    /// Its size in GiB.
    pub size_gib: u32,
    /// The key that encrypts it; `None` for an unencrypted volume.
    pub key: Option<KeyRef>,
}

/// The S3 repository that holds image-level backups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// The bucket.
    pub bucket: BucketName,
    /// The key prefix inside the bucket (empty, or ending without a slash).
    pub prefix: String,
    /// The region of the bucket.
    pub region: Region,
    /// The role whose short-lived credentials workers receive to read and write the repository.
    pub role: RoleArn,
}

impl Estate {
    /// Reads an estate from TOML `text`; `file` names the file in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, EstateError> {
        let mut check = Checker {
            text,
            problems: Vec::new(),
        };
        let estate = match toml::from_str::<RawEstate>(text) {
            Ok(raw) => check.estate(raw),
            Err(e) => {
                check.problems.push(Problem {
                    line: e.span().map(|s| check.line(s.start)),
                    field: "(file)".into(),
                    message: e.message().trim().to_owned(),
                });
                None
            }
        };
        // Checks run section by section; report in file order.
        check.problems.sort_by_key(|p| p.line);
        match estate {
            Some(estate) if check.problems.is_empty() => Ok(estate),
            _ => Err(EstateError {
                file: file.to_owned(),
                problems: check.problems,
            }),
        }
    }

    /// The default EBS encryption key of `account` in `region`: the configured one, else
    /// `aws/ebs`, as AWS has it out of the box.
    pub fn default_key(&self, account: &AccountId, region: &Region) -> KeyRef {
        self.default_keys
            .get(&(account.clone(), region.clone()))
            .cloned()
            .unwrap_or_else(|| KeyRef::AwsManaged {
                account: account.clone(),
                region: region.clone(),
            })
    }

    /// Whether EBS encryption by default is on in `account` and `region`.
    pub fn encrypts_by_default(&self, account: &AccountId, region: &Region) -> bool {
        self.encryption_by_default
            .contains(&(account.clone(), region.clone()))
    }

    /// How workers run in `account` and `region`, if the estate says.
    pub fn worker_settings(&self, account: &AccountId, region: &Region) -> Option<&WorkerSettings> {
        self.workers.get(&(account.clone(), region.clone()))
    }

    /// The instance with this id.
    pub fn instance(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.iter().find(|i| &i.id == id)
    }

    /// The production account with this id.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// The partition of the estate (all its ARNs share it).
    pub fn partition(&self) -> Partition {
        self.appliance.worker_deployment_role.partition()
    }
}

// ---- raw form, as serde reads it --------------------------------------------------------

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEstate {
    appliance: RawAppliance,
    #[serde(default, rename = "account")]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    default_keys: BTreeMap<String, Text>,
    #[serde(default)]
    encryption_by_default: BTreeMap<String, Spanned<bool>>,
    #[serde(default, rename = "instance")]
    instances: Vec<RawInstance>,
    repository: Option<RawRepository>,
    #[serde(default)]
    workers: BTreeMap<String, Spanned<RawWorkers>>,
    embedded: Option<RawEmbedded>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    subnet: Option<Text>,
    #[serde(default)]
    security_groups: Vec<Text>,
    instance_type: Option<Text>,
    #[serde(default)]
    tags: BTreeMap<String, Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbedded {
    data_mib: Option<Spanned<i64>>,
    #[serde(default)]
    key_policies: BTreeMap<String, Text>,
    #[serde(default)]
    role_policies: BTreeMap<String, Text>,
    #[serde(default)]
    trust_policies: BTreeMap<String, Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppliance {
    account: Text,
    worker_deployment_role: Text,
    role: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    id: Text,
    backup_role: Option<Text>,
    restore_role: Option<Text>,
    worker_role: Option<Text>,
    external_id: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    id: Text,
    account: Text,
    region: Text,
    volumes: Vec<RawVolume>,
    #[serde(default)]
    tags: BTreeMap<String, Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    id: Text,
    size_gib: Spanned<i64>,
    key: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    bucket: Text,
    #[serde(default)]
    prefix: Option<Text>,
    region: Text,
    role: Text,
}

// ---- validation --------------------------------------------------------------------------

/// Validates raw values, collecting every problem with its location.
struct Checker<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn problem<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line: Some(self.line(at.span().start)),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Parses one identifier, recording a problem if it is malformed.
    fn id<T: FromStr<Err = InvalidId>>(&mut self, v: &Text, field: &str) -> Option<T> {
        match v.get_ref().parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(v, field, e.to_string());
                None
            }
        }
    }

    /// Parses a role ARN that must belong to `account`.
    fn role_in(&mut self, v: &Text, field: &str, account: Option<&AccountId>) -> Option<RoleArn> {
        let role: RoleArn = self.id(v, field)?;
        match account {
            Some(a) if role.account() != a => {
                self.problem(
                    v,
                    field,
                    format!(
                        "the role belongs to account {}, expected a role of account {a}",
                        role.account()
                    ),
                );
                None
            }
            _ => Some(role),
        }
    }

    /// Parses an `"ACCOUNT/REGION"` table key, which must name a defined account.
    fn place(
        &mut self,
        key: &str,
        at: &Spanned<impl Sized>,
        field: &str,
        defined: &BTreeSet<AccountId>,
    ) -> Option<(AccountId, Region)> {
        let Some((a, r)) = key.split_once('/') else {
            self.problem(
                at,
                field,
                format!("{key:?} is not \"ACCOUNT/REGION\", like \"123456789012/us-east-1\""),
            );
            return None;
        };
        let parsed = (a.parse::<AccountId>(), r.parse::<Region>());
        match parsed {
            (Ok(account), Ok(region)) => {
                if !defined.contains(&account) {
                    self.problem(at, field, undefined_account(&account));
                    return None;
                }
                Some((account, region))
            }
            (Err(e), _) | (_, Err(e)) => {
                self.problem(at, field, e.to_string());
                None
            }
        }
    }

    fn key_in(&mut self, v: &Text, field: &str, account: &AccountId, region: &Region) -> Option<KeyRef> {
        match KeyRef::parse_in(v.get_ref(), account, region) {
            Ok(key) if key.region() != region => {
                self.problem(
                    v,
                    field,
                    format!(
                        "the key is in region {}, but KMS keys are regional: expected a key of {region}",
                        key.region()
                    ),
                );
                None
            }
            Ok(key) => Some(key),
            Err(e) => {
                self.problem(v, field, e.to_string());
                None
            }
        }
    }

    fn estate(&mut self, raw: RawEstate) -> Option<Estate> {
        let appliance = self.appliance(&raw.appliance);
        let accounts = self.accounts(&raw.accounts);

        // Accounts that may be named elsewhere: the production accounts and the backup account.
        let mut defined: BTreeSet<AccountId> = accounts.keys().cloned().collect();
        defined.extend(appliance.as_ref().map(|a| a.account.clone()));

        let mut default_keys = BTreeMap::new();
        for (place, value) in &raw.default_keys {
            let field = format!("default_keys.{place:?}");
            if let Some((account, region)) = self.place(place, value, &field, &defined) {
                if let Some(key) = self.key_in(value, &field, &account, &region) {
                    // Writing `aws/ebs` explicitly is the same as leaving the entry out.
                    if !key.is_aws_managed() {
                        default_keys.insert((account, region), key);
                    }
                }
            }
        }

        let mut encryption_by_default = BTreeSet::new();
        for (place, on) in &raw.encryption_by_default {
            let field = format!("encryption_by_default.{place:?}");
            if let Some(p) = self.place(place, on, &field, &defined) {
                if *on.get_ref() {
                    encryption_by_default.insert(p);
                }
            }
        }

        let instances = self.instances(&raw.instances, &accounts);
        let repository = raw.repository.as_ref().and_then(|r| self.repository(r));
        let mut workers = BTreeMap::new();
        for (place, settings) in &raw.workers {
            let field = format!("workers.{place:?}");
            if let Some(p) = self.place(place, settings, &field, &defined) {
                workers.insert(p, self.worker_settings(settings.get_ref(), &field));
            }
        }
        let embedded = raw
            .embedded
            .as_ref()
            .map(|e| self.embedded(e))
            .unwrap_or_default();
        Some(Estate {
            appliance: appliance?,
            accounts,
            default_keys,
            encryption_by_default,
            instances,
            repository,
            workers,
            embedded,
        })
    }

    fn appliance(&mut self, raw: &RawAppliance) -> Option<Appliance> {
        let account: Option<AccountId> = self.id(&raw.account, "appliance.account");
        let worker_deployment_role = self.role_in(
            &raw.worker_deployment_role,
            "appliance.worker_deployment_role",
            account.as_ref(),
        );
        let role = match &raw.role {
            Some(r) => Some(self.role_in(r, "appliance.role", account.as_ref())?),
            None => None,
        };
        Some(Appliance {
            account: account?,
            worker_deployment_role: worker_deployment_role?,
            role,
        })
    }

    fn accounts(&mut self, raw: &[RawAccount]) -> BTreeMap<AccountId, Account> {
        let mut accounts = BTreeMap::new();
        for (i, a) in raw.iter().enumerate() {
            let field = |name: &str| format!("account[{i}].{name}");
            let Some(id) = self.id::<AccountId>(&a.id, &field("id")) else {
                continue;
            };
            let mut role = |v: &Option<Text>, name: &str| {
                v.as_ref().and_then(|v| self.role_in(v, &field(name), Some(&id)))
            };
            let account = Account {
                backup_role: role(&a.backup_role, "backup_role"),
                restore_role: role(&a.restore_role, "restore_role"),
                worker_role: role(&a.worker_role, "worker_role"),
                external_id: a.external_id.as_ref().map(|e| e.get_ref().clone()),
                id: id.clone(),
            };
            if let Some(e) = &a.external_id {
                // sts:ExternalId: 2 to 1224 characters of [\w+=,.@:/-].
                let ok = (2..=1224).contains(&e.get_ref().len())
                    && e.get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
                if !ok {
                    self.problem(
                        e,
                        &field("external_id"),
                        "expected 2 to 1224 letters, digits or _+=,.@:/-",
                    );
                }
            }
            if accounts.insert(id.clone(), account).is_some() {
                self.problem(&a.id, &field("id"), format!("account {id} is defined twice"));
            }
        }
        accounts
    }

    fn instances(&mut self, raw: &[RawInstance], accounts: &BTreeMap<AccountId, Account>) -> Vec<Instance> {
        let mut instances = Vec::new();
        let mut seen_instances = BTreeSet::new();
        let mut seen_volumes = BTreeSet::new();
        for (i, inst) in raw.iter().enumerate() {
            let field = |name: &str| format!("instance[{i}].{name}");
            let id: Option<InstanceId> = self.id(&inst.id, &field("id"));
            let region: Option<Region> = self.id(&inst.region, &field("region"));
            let mut account: Option<AccountId> = self.id(&inst.account, &field("account"));
            if let Some(a) = account.as_ref().filter(|a| !accounts.contains_key(*a)) {
                self.problem(&inst.account, &field("account"), undefined_account(a));
                account = None;
            }
            if let Some(id) = &id {
                if !seen_instances.insert(id.clone()) {
                    self.problem(&inst.id, &field("id"), format!("instance {id} is defined twice"));
                }
            }
            if inst.volumes.is_empty() {
                self.problem(&inst.id, &field("volumes"), "an instance has at least one volume");
            }
            let mut volumes = Vec::new();
            for (j, v) in inst.volumes.iter().enumerate() {
                let vfield = |name: &str| format!("instance[{i}].volumes[{j}].{name}");
                let vid: Option<VolumeId> = self.id(&v.id, &vfield("id"));
                if let Some(vid) = &vid {
                    if !seen_volumes.insert(vid.clone()) {
                        self.problem(&v.id, &vfield("id"), format!("volume {vid} is defined twice"));
                    }
                }
                let size = *v.size_gib.get_ref();
                let size_ok = u32::try_from(size)
                    .ok()
                    .filter(|s| (1..=MAX_VOLUME_GIB).contains(s));
                if size_ok.is_none() {
                    self.problem(
                        &v.size_gib,
                        &vfield("size_gib"),
                        format!("{size} is not a volume size: expected 1 to {MAX_VOLUME_GIB} GiB"),
                    );
                }
                let key = match (&v.key, &account, &region) {
                    (Some(k), Some(a), Some(r)) => self.key_in(k, &vfield("key"), a, r).map(Some),
                    (Some(_), _, _) => None,
                    (None, _, _) => Some(None),
                };
                if let (Some(id), Some(size_gib), Some(key)) = (vid, size_ok, key) {
                    volumes.push(Volume { id, size_gib, key });
                }
            }
            let tags = self.tags(&inst.tags, &format!("instance[{i}]"));
            if let (Some(id), Some(account), Some(region)) = (id, account, region) {
                instances.push(Instance {
                    id,
                    account,
                    region,
                    volumes,
                    tags,
                });
            }
        }
        instances
    }

    fn repository(&mut self, raw: &RawRepository) -> Option<Repository> {
        let bucket = self.id(&raw.bucket, "repository.bucket");
        let region = self.id(&raw.region, "repository.region");
        let role = self.id(&raw.role, "repository.role");
        let prefix = raw
            .prefix
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default();
        if prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
            if let Some(p) = &raw.prefix {
                self.problem(
                    p,
                    "repository.prefix",
                    "expected a key prefix without leading, trailing or double slashes, like backups/ec2",
                );
            }
            return None;
        }
        Some(Repository {
            bucket: bucket?,
            prefix,
            region: region?,
            role: role?,
        })
    }
}

impl Checker<'_> {
    fn worker_settings(&mut self, raw: &RawWorkers, field: &str) -> WorkerSettings {
        let mut out = WorkerSettings::default();
        let resource = |check: &mut Self, v: &Text, name: &str, prefix: &str| {
            let id = v.get_ref();
            let hex = id.strip_prefix(prefix).unwrap_or_default();
            let ok = id.starts_with(prefix)
                && matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if ok {
                Some(id.clone())
            } else {
                check.problem(
                    v,
                    &format!("{field}.{name}"),
                    format!("expected an id like {prefix}0123456789abcdef0, got {id:?}"),
                );
                None
            }
        };
        if let Some(subnet) = &raw.subnet {
            out.subnet = resource(self, subnet, "subnet", "subnet-");
        }
        for group in &raw.security_groups {
            out.security_groups
                .extend(resource(self, group, "security_groups", "sg-"));
        }
        if let Some(t) = &raw.instance_type {
            let valid = t.get_ref().split_once('.').is_some_and(|(family, size)| {
                !family.is_empty()
                    && !size.is_empty()
                    && family
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && size.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            if valid {
                out.instance_type = Some(t.get_ref().clone());
            } else {
                self.problem(
                    t,
                    &format!("{field}.instance_type"),
                    format!(
                        "expected an EC2 instance type like c6i.xlarge, got {:?}",
                        t.get_ref()
                    ),
                );
            }
        }
        out.tags = self.tags(&raw.tags, field);
        out
    }

    /// Tags as EC2 takes them, without the reserved prefixes (`aws:`, and `bulwark:` for the
    /// tags Bulwark puts on what it creates).
    fn tags(&mut self, raw: &BTreeMap<String, Text>, field: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let reserved = ["aws:", "bulwark:"]
                .iter()
                .any(|p| key.to_lowercase().starts_with(p));
            if key.is_empty()
                || key.chars().count() > 128
                || reserved
                || value.get_ref().chars().count() > 256
            {
                self.problem(
                    value,
                    &format!("{field}.tags.{key:?}"),
                    "expected a tag key of 1 to 128 characters not starting with aws: or bulwark: \
                     (those are reserved), and a value of at most 256",
                );
            } else {
                out.insert(key.clone(), value.get_ref().clone());
            }
        }
        out
    }

    fn embedded(&mut self, raw: &RawEmbedded) -> EmbeddedSetup {
        let mut out = EmbeddedSetup::default();
        if let Some(mib) = &raw.data_mib {
            match u32::try_from(*mib.get_ref()) {
                Ok(m) if m <= MAX_VOLUME_GIB * 1024 => out.data_mib = Some(m),
                _ => self.problem(
                    mib,
                    "embedded.data_mib",
                    "expected a number of MiB from 0 to 67108864",
                ),
            }
        }
        for (key, doc) in &raw.key_policies {
            let field = format!("embedded.key_policies.{key:?}");
            if let (Some(arn), Some(doc)) = (self.parse_key(key, doc, &field), self.policy(doc, &field)) {
                out.key_policies.insert(arn, doc);
            }
        }
        for (table, map) in [
            ("role_policies", &raw.role_policies),
            ("trust_policies", &raw.trust_policies),
        ] {
            for (role, doc) in map {
                let field = format!("embedded.{table}.{role:?}");
                let arn = match role.parse::<RoleArn>() {
                    Ok(arn) => Some(arn),
                    Err(e) => {
                        self.problem(doc, &field, e.to_string());
                        None
                    }
                };
                if let (Some(arn), Some(doc)) = (arn, self.policy(doc, &field)) {
                    let target = if table == "role_policies" {
                        &mut out.role_policies
                    } else {
                        &mut out.trust_policies
                    };
                    target.insert(arn, doc);
                }
            }
        }
        out
    }

    fn parse_key(&mut self, key: &str, at: &Text, field: &str) -> Option<KeyArn> {
        match key.parse::<KeyArn>() {
            Ok(arn) => Some(arn),
            Err(e) => {
                self.problem(at, field, e.to_string());
                None
            }
        }
    }

    /// A policy document: JSON with a `Statement`. Its statements are checked where it is
    /// used (by the IAM policy evaluator); here only its shape.
    fn policy(&mut self, doc: &Text, field: &str) -> Option<String> {
        match serde_json::from_str::<serde_json::Value>(doc.get_ref()) {
            Ok(v) if v.get("Statement").is_some() => Some(doc.get_ref().clone()),
            Ok(_) => {
                self.problem(
                    doc,
                    field,
                    "expected a policy document: a JSON object with a \"Statement\"",
                );
                None
            }
            Err(e) => {
                self.problem(doc, field, format!("not JSON: {e}"));
                None
            }
        }
    }
}

fn undefined_account(account: &AccountId) -> String {
    format!(
        "account {account} is not defined in this file: add an [[account]] with id = \"{account}\" \
         and its roles"
    )
}

#[cfg(test)]
mod tests;
