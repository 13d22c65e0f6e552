//! The IAM policy evaluator: decides whether a request (a principal calling an action on a
//! resource, with condition keys) is allowed, the way AWS documents it. The embedded cloud
//! decides every API call with it and the preflight check reuses it; it does no I/O.
//!
//! It follows these AWS documents:
//!
//! - IAM User Guide, "Policy evaluation logic": deny by default, an explicit `Deny` in any
//!   applicable policy overrides every `Allow`; within one account an identity policy *or* a
//!   resource policy can allow.
//! - IAM User Guide, "Cross-account policy evaluation logic": across accounts both the
//!   caller's identity policies *and* the resource policy must allow.
//! - IAM User Guide, "IAM JSON policy elements" (`Effect`, `Action`/`NotAction`,
//!   `Resource`/`NotResource`, `Principal`/`NotPrincipal`, `Condition`) and "Condition
//!   operators": keys are case-insensitive, several keys or operators AND, several values for
//!   one key OR (AND for negated operators), a key missing from the request fails the condition
//!   except for negated operators, `...IfExists` and `Null`.
//! - KMS Developer Guide, "Key policies", and IAM User Guide, "Role trust policies": a key
//!   policy or a trust policy must allow explicitly; naming the account (`arn:aws:iam::A:root`)
//!   only delegates to that account's IAM policies, naming a role allows its sessions outright.
//!
//! Not supported (rejected at parse time, so never silently misjudged): date, IP address and
//! binary condition operators. Policy variables (`${aws:username}`) are matched literally.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bulwark_model::iam::{self, PolicyDocument};
use bulwark_model::{AccountId, Action, RoleArn};

/// Why a policy document was rejected: AWS's `MalformedPolicyDocument`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The document is not a valid policy; the message says what is wrong and where.
    #[error("malformed policy document: {0}")]
    Malformed(String),
}

/// Who makes the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A session of an IAM role (assumed by the appliance or by EC2 for an instance profile).
    Role {
        /// The role's ARN, `arn:aws:iam::ACCOUNT:role/path/name`.
        arn: String,
        /// The account the role belongs to.
        account: AccountId,
    },
    /// The account's root user: the long-term credentials of the account.
    Account(AccountId),
    /// An AWS service principal, e.g. `ec2.amazonaws.com`.
    Service(String),
}

impl Principal {
    /// A session of `role`.
    pub fn role(role: &RoleArn) -> Self {
        Self::Role {
            arn: role.as_str().to_owned(),
            account: role.account().clone(),
        }
    }

    /// The account the principal belongs to; `None` for a service.
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Self::Role { account, .. } | Self::Account(account) => Some(account),
            Self::Service(_) => None,
        }
    }
}

/// One API call to decide.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Who calls.
    pub principal: &'a Principal,
    /// The IAM action, like `ec2:CreateVolume`.
    pub action: Action,
    /// The resource's ARN, or `*` for actions without resource-level permissions.
    pub resource: &'a str,
    /// The condition keys present in the request (`sts:ExternalId`, `aws:SourceArn`, ...).
    /// Keys are looked up case-insensitively.
    pub context: &'a BTreeMap<String, String>,
}

/// The outcome of an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Some statement allows and none denies.
    Allow,
    /// A statement denies: nothing can override it.
    ExplicitDeny,
    /// No statement allows (AWS's default).
    ImplicitDeny,
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }

    /// Combines decisions of policies that apply together: a deny wins, then an allow.
    fn combine(decisions: impl IntoIterator<Item = Decision>) -> Decision {
        decisions
            .into_iter()
            .fold(Self::ImplicitDeny, |sum, next| match (sum, next) {
                (Self::ExplicitDeny, _) | (_, Self::ExplicitDeny) => Self::ExplicitDeny,
                (Self::Allow, _) | (_, Self::Allow) => Self::Allow,
                _ => Self::ImplicitDeny,
            })
    }
}

/// What a resource policy says about a request, before it is combined with identity policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceMatch {
    /// A `Deny` statement applies to the request.
    pub denies: bool,
    /// An `Allow` statement names the principal itself (its role ARN, `*`, its service, or, for
    /// the root user, its account).
    pub allows_principal: bool,
    /// An `Allow` statement names only the principal's account: this delegates the decision to
    /// that account's IAM policies.
    pub allows_account: bool,
}

/// What kind of resource policy guards the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourcePolicyKind {
    /// A policy that adds to the account's IAM policies: SQS queue, S3 bucket.
    Ordinary,
    /// A KMS key policy: nothing in the account can use the key unless it allows.
    KeyPolicy,
    /// A role's trust policy: nothing can assume the role unless it allows.
    TrustPolicy,
}

/// The policy attached to the resource of a request.
#[derive(Clone, Copy, Debug)]
pub struct ResourcePolicy<'a> {
    /// The policy.
    pub document: &'a Policy,
    /// The account owning the resource.
    pub owner: &'a AccountId,
    /// What kind of policy it is.
    pub kind: ResourcePolicyKind,
}

/// The whole AWS decision for one request: the caller's identity policies together with the
/// resource's policy, if it has one.
///
/// A resource without a policy (an EBS volume, a snapshot) is decided by the identity policies
/// alone; keys and roles always have a policy, so callers pass it. The root user
/// ([`Principal::Account`]) has full access in its own account (no IAM policy can be attached
/// to it), but resource policies bind it like anyone else. A service principal has no identity
/// policies: only a resource statement naming the service allows it.
pub fn authorize(
    request: &Request,
    identity_policies: &[&Policy],
    resource_policy: Option<ResourcePolicy>,
) -> Decision {
    let identity = Decision::combine(identity_policies.iter().map(|p| p.evaluate_identity(request)));
    let identity = match request.principal {
        Principal::Service(_) => Decision::ImplicitDeny,
        Principal::Account(_) if identity != Decision::ExplicitDeny => Decision::Allow,
        _ => identity,
    };
    let granted = resource_policy.map(|policy| (policy, policy.document.evaluate_resource(request)));
    if identity == Decision::ExplicitDeny || granted.is_some_and(|(_, m)| m.denies) {
        return Decision::ExplicitDeny;
    }
    let identity_allows = identity.is_allowed();
    let Some((policy, granted)) = granted else {
        return identity;
    };
    let allowed = match request.principal.account() {
        None => granted.allows_principal,
        Some(account) if account != policy.owner => {
            identity_allows && (granted.allows_principal || granted.allows_account)
        }
        Some(_) => match policy.kind {
            ResourcePolicyKind::Ordinary => identity_allows || granted.allows_principal,
            ResourcePolicyKind::KeyPolicy | ResourcePolicyKind::TrustPolicy => {
                granted.allows_principal || (granted.allows_account && identity_allows)
            }
        },
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Whether the IAM action `pattern` (like `ec2:Create*` or `*`) covers `action`. Action names
/// are case-insensitive; `*` matches any run of characters, `?` one character.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard_match(&pattern.to_lowercase(), &action.to_lowercase())
}

/// Whether the resource `pattern` covers the ARN `resource`: case-sensitive, `*` matches any run
/// of characters (including `:` and `/`), `?` one character.
pub fn resource_matches(pattern: &str, resource: &str) -> bool {
    wildcard_match(pattern, resource)
}

/// A policy document made ready to evaluate (identity policy, role trust policy, KMS key
/// policy, SQS queue policy): its statements checked against the rules of the policy language.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

impl Policy {
    /// Reads a policy of any kind, rejecting what AWS rejects as `MalformedPolicyDocument`:
    /// invalid JSON, a missing `Statement`, an `Effect` other than `Allow`/`Deny`, neither or
    /// both of `Action`/`NotAction`, both `Resource` and `NotResource` (or `Principal` and
    /// `NotPrincipal`), unknown elements, invalid principals, unknown condition operators.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let document = PolicyDocument::from_json(json).map_err(|e| malformed(e.0))?;
        Self::new(&document)
    }

    /// Checks a typed document (one Bulwark wrote, or one read with [`PolicyDocument::from_json`]).
    pub fn new(document: &PolicyDocument) -> Result<Policy, PolicyError> {
        match document.version.as_deref() {
            None | Some("2012-10-17" | "2008-10-17") => {}
            Some(other) => {
                return Err(malformed(format!(
                    "Version must be \"2012-10-17\" or \"2008-10-17\", not \"{other}\""
                )))
            }
        }
        let statements = document
            .statements
            .iter()
            .enumerate()
            .map(|(index, statement)| Statement::new(index, statement))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sids = BTreeSet::new();
        for statement in &statements {
            if let Some(sid) = &statement.sid {
                if !sids.insert(sid) {
                    return Err(malformed(format!("duplicate Sid \"{sid}\"")));
                }
            }
        }
        Ok(Policy { statements })
    }

    /// Reads an identity policy (`iam:PutRolePolicy`): as [`Policy::parse`], and every
    /// statement must have `Resource` or `NotResource` and no `Principal`.
    pub fn parse_identity(json: &str) -> Result<Policy, PolicyError> {
        let policy = Self::parse(json)?;
        for (index, statement) in policy.statements.iter().enumerate() {
            let at = location(index, statement.sid.as_deref());
            if statement.principals.is_some() {
                return Err(malformed(format!(
                    "{at}: an identity policy must not specify a principal"
                )));
            }
            if statement.resources.is_none() {
                return Err(malformed(format!("{at}: missing Resource or NotResource")));
            }
        }
        Ok(policy)
    }

    /// Reads a resource policy (trust, key, queue or bucket policy): as [`Policy::parse`],
    /// and every statement must have `Principal` or `NotPrincipal`.
    pub fn parse_resource(json: &str) -> Result<Policy, PolicyError> {
        let policy = Self::parse(json)?;
        for (index, statement) in policy.statements.iter().enumerate() {
            if statement.principals.is_none() {
                let at = location(index, statement.sid.as_deref());
                return Err(malformed(format!("{at}: missing Principal or NotPrincipal")));
            }
        }
        Ok(policy)
    }

    /// Evaluates the document as an identity policy: the request's principal is ignored (the
    /// policy is attached to it).
    pub fn evaluate_identity(&self, request: &Request) -> Decision {
        let applying = self.statements.iter().filter(|s| s.matches_request(request));
        Decision::combine(applying.map(|s| match s.effect {
            Effect::Allow => Decision::Allow,
            Effect::Deny => Decision::ExplicitDeny,
        }))
    }

    /// Evaluates the document as a resource policy: which statements apply to the request and
    /// how they name its principal. A statement without `Principal` applies to no one.
    pub fn evaluate_resource(&self, request: &Request) -> ResourceMatch {
        let mut result = ResourceMatch::default();
        for statement in self.statements.iter().filter(|s| s.matches_request(request)) {
            let naming = match &statement.principals {
                Some(principals) => principals.naming(request.principal),
                None => Naming::NotNamed,
            };
            match (statement.effect, naming) {
                (_, Naming::NotNamed) => {}
                // Denying an account denies everyone in it.
                (Effect::Deny, _) => result.denies = true,
                (Effect::Allow, Naming::Directly) => result.allows_principal = true,
                (Effect::Allow, Naming::ViaAccount) => result.allows_account = true,
            }
        }
        result
    }
}

fn malformed(message: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(message.into())
}

/// Names a statement in error messages: its index, and its Sid if it has one.
fn location(index: usize, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("statement {index} (Sid \"{sid}\")"),
        None => format!("statement {index}"),
    }
}

/// Takes whichever of an element and its `Not` form is present; both present is an error.
fn one_of<'v, T>(
    element: Option<&'v T>,
    not_element: Option<&'v T>,
    name: &str,
    at: &str,
) -> Result<Option<(&'v T, bool)>, PolicyError> {
    match (element, not_element) {
        (Some(_), Some(_)) => Err(malformed(format!("{at}: has both {name} and Not{name}"))),
        (Some(value), None) => Ok(Some((value, false))),
        (None, Some(value)) => Ok(Some((value, true))),
        (None, None) => Ok(None),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    actions: Patterns,
    /// `None` when omitted (allowed in trust and key policies): every resource.
    resources: Option<Patterns>,
    /// `None` when omitted (identity policies).
    principals: Option<Principals>,
    conditions: Vec<Condition>,
}

/// The patterns of `Action` or `Resource`, or of `NotAction`/`NotResource` when `negated`.
#[derive(Clone, Debug, PartialEq)]
struct Patterns {
    patterns: Vec<String>,
    negated: bool,
}

impl Patterns {
    fn matches(&self, matches: impl Fn(&str) -> bool) -> bool {
        self.patterns.iter().any(|p| matches(p)) != self.negated
    }
}

impl Statement {
    fn new(index: usize, statement: &iam::Statement) -> Result<Statement, PolicyError> {
        let sid = statement.sid.clone();
        let at = location(index, sid.as_deref());
        let effect = match statement.effect {
            iam::Effect::Allow => Effect::Allow,
            iam::Effect::Deny => Effect::Deny,
        };
        let Some((actions, negated)) = one_of(
            statement.action.as_ref(),
            statement.not_action.as_ref(),
            "Action",
            &at,
        )?
        else {
            return Err(malformed(format!("{at}: missing Action or NotAction")));
        };
        let actions = Patterns {
            patterns: actions.clone(),
            negated,
        };
        if let Some(bad) = actions.patterns.iter().find(|a| *a != "*" && !a.contains(':')) {
            return Err(malformed(format!(
                "{at}: action \"{bad}\" must be prefixed by a service, like \"ec2:\""
            )));
        }
        let resources = match one_of(
            statement.resource.as_ref(),
            statement.not_resource.as_ref(),
            "Resource",
            &at,
        )? {
            Some((patterns, negated)) => {
                if let Some(bad) = patterns.iter().find(|r| *r != "*" && !r.starts_with("arn:")) {
                    return Err(malformed(format!(
                        "{at}: resource \"{bad}\" must be \"*\" or an ARN"
                    )));
                }
                Some(Patterns {
                    patterns: patterns.clone(),
                    negated,
                })
            }
            None => None,
        };
        let principals = match one_of(
            statement.principal.as_ref(),
            statement.not_principal.as_ref(),
            "Principal",
            &at,
        )? {
            Some((principals, negated)) => Some(Principals::new(principals, negated, &at)?),
            None => None,
        };
        let conditions = Condition::new_block(&statement.condition, &at)?;
        Ok(Statement {
            sid,
            effect,
            actions,
            resources,
            principals,
            conditions,
        })
    }

    /// Whether action, resource and conditions match; the caller checks the principal.
    fn matches_request(&self, request: &Request) -> bool {
        self.actions
            .matches(|pattern| action_matches(pattern, request.action.as_str()))
            && self
                .resources
                .as_ref()
                .is_none_or(|r| r.matches(|p| resource_matches(p, request.resource)))
            && self.conditions.iter().all(|c| c.holds(request.context))
    }
}

/// How a statement's `Principal` names the request's principal. Ordered: the strongest wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Naming {
    NotNamed,
    /// Only its account is named: the account's IAM policies must allow too.
    ViaAccount,
    /// The principal itself is named (or everyone is).
    Directly,
}

/// One entry of a `Principal` element.
#[derive(Clone, Debug, PartialEq)]
enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`.
    Anyone,
    /// `{"AWS": "123456789012"}` or `{"AWS": "arn:aws:iam::123456789012:root"}`.
    Account(String),
    /// Any other IAM ARN: a role, a user, an assumed-role session.
    Arn(String),
    /// `{"Service": "ec2.amazonaws.com"}`.
    Service(String),
    /// `Federated` and `CanonicalUser` principals: valid, but no request here comes from one.
    Other,
}

impl PrincipalEntry {
    fn parse_aws(value: &str, at: &str) -> Result<PrincipalEntry, PolicyError> {
        let is_account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
        if value == "*" {
            return Ok(Self::Anyone);
        }
        if value.contains('*') || value.contains('?') {
            return Err(malformed(format!(
                "{at}: invalid principal \"{value}\": wildcards cannot match part of a principal"
            )));
        }
        if is_account(value) {
            return Ok(Self::Account(value.to_owned()));
        }
        let fields: Vec<&str> = value.splitn(6, ':').collect();
        match fields.as_slice() {
            ["arn", _, "iam", "", account, "root"] if is_account(account) => {
                Ok(Self::Account((*account).to_owned()))
            }
            ["arn", _, "iam" | "sts", "", account, _] if is_account(account) => {
                Ok(Self::Arn(value.to_owned()))
            }
            _ => Err(malformed(format!(
                "{at}: invalid principal \"{value}\": expected an account id or an IAM ARN"
            ))),
        }
    }

    fn naming(&self, who: &Principal) -> Naming {
        match (self, who) {
            (Self::Anyone, _) => Naming::Directly,
            (Self::Account(a), Principal::Account(account)) if a == account.as_str() => Naming::Directly,
            (Self::Account(a), Principal::Role { account, .. }) if a == account.as_str() => {
                Naming::ViaAccount
            }
            (Self::Arn(a), Principal::Role { arn, .. }) if a == arn => Naming::Directly,
            (Self::Service(s), Principal::Service(service)) if s == service => Naming::Directly,
            _ => Naming::NotNamed,
        }
    }
}

/// A `Principal` element, or a `NotPrincipal` one when `negated`.
#[derive(Clone, Debug, PartialEq)]
struct Principals {
    entries: Vec<PrincipalEntry>,
    negated: bool,
}

impl Principals {
    fn new(value: &iam::Principals, negated: bool, at: &str) -> Result<Principals, PolicyError> {
        let entries = match value {
            iam::Principals::Anyone => vec![PrincipalEntry::Anyone],
            iam::Principals::ByType(kinds) => {
                let mut entries = Vec::new();
                for (kind, values) in kinds {
                    for value in values {
                        entries.push(match kind.as_str() {
                            "AWS" => PrincipalEntry::parse_aws(value, at)?,
                            "Service" => PrincipalEntry::Service(value.clone()),
                            "Federated" | "CanonicalUser" => PrincipalEntry::Other,
                            _ => return Err(malformed(format!("{at}: unknown principal type \"{kind}\""))),
                        });
                    }
                }
                entries
            }
        };
        Ok(Principals { entries, negated })
    }

    fn naming(&self, who: &Principal) -> Naming {
        let named = self
            .entries
            .iter()
            .map(|e| e.naming(who))
            .max()
            .unwrap_or(Naming::NotNamed);
        if !self.negated {
            return named;
        }
        // AWS: `NotPrincipal` exempts a role only when it lists both the role and its account
        // (listing the role alone still leaves it covered through its account).
        let exempt = match who {
            Principal::Role { account, .. } => {
                let root = Principal::Account(account.clone());
                named == Naming::Directly && self.entries.iter().any(|e| e.naming(&root) == Naming::Directly)
            }
            Principal::Account(_) | Principal::Service(_) => named == Naming::Directly,
        };
        if exempt {
            Naming::NotNamed
        } else {
            Naming::Directly
        }
    }
}

/// What a condition operator compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    /// The request's number compares to the policy's as the ordering says (or is equal to it,
    /// when the flag is set: `NumericLessThanEquals` is `Numeric(Less, true)`).
    Numeric(Ordering, bool),
    Bool,
    /// `ArnEquals` and `ArnLike` behave the same: both take wildcards.
    ArnLike,
    Null,
}

/// `ForAnyValue:` / `ForAllValues:`. Request values are single strings here, so both reduce to
/// the plain operator once the key is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetQualifier {
    AnyValue,
    AllValues,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Operator {
    test: Test,
    negated: bool,
    if_exists: bool,
    set: Option<SetQualifier>,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::AnyValue), rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::AllValues), rest)
        } else {
            (None, name)
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let (test, negated) = match base {
            "StringEquals" => (Test::StringEquals, false),
            "StringNotEquals" => (Test::StringEquals, true),
            "StringEqualsIgnoreCase" => (Test::StringEqualsIgnoreCase, false),
            "StringNotEqualsIgnoreCase" => (Test::StringEqualsIgnoreCase, true),
            "StringLike" => (Test::StringLike, false),
            "StringNotLike" => (Test::StringLike, true),
            "NumericEquals" => (Test::Numeric(Ordering::Equal, false), false),
            "NumericNotEquals" => (Test::Numeric(Ordering::Equal, false), true),
            "NumericLessThan" => (Test::Numeric(Ordering::Less, false), false),
            "NumericLessThanEquals" => (Test::Numeric(Ordering::Less, true), false),
            "NumericGreaterThan" => (Test::Numeric(Ordering::Greater, false), false),
            "NumericGreaterThanEquals" => (Test::Numeric(Ordering::Greater, true), false),
            "Bool" => (Test::Bool, false),
            "ArnEquals" | "ArnLike" => (Test::ArnLike, false),
            "ArnNotEquals" | "ArnNotLike" => (Test::ArnLike, true),
            "Null" if !if_exists && set.is_none() => (Test::Null, false),
            _ => return None,
        };
        Some(Operator {
            test,
            negated,
            if_exists,
            set,
        })
    }
}

/// One key of one operator block: `"StringEquals": {"sts:ExternalId": ["a", "b"]}`.
#[derive(Clone, Debug, PartialEq)]
struct Condition {
    operator: Operator,
    key: String,
    values: Vec<String>,
}

impl Condition {
    fn new_block(
        block: &BTreeMap<String, BTreeMap<String, iam::ConditionValues>>,
        at: &str,
    ) -> Result<Vec<Condition>, PolicyError> {
        let mut conditions = Vec::new();
        for (name, keys) in block {
            let operator = Operator::parse(name).ok_or_else(|| {
                malformed(format!(
                    "{at}: unknown or unsupported condition operator \"{name}\" (supported: String*, \
                     Numeric*, Bool, Arn*, Null, with IfExists, ForAnyValue: or ForAllValues:)"
                ))
            })?;
            for (key, values) in keys {
                if let Some(bad) = values.0.iter().find(|v| !operator.test.accepts(v)) {
                    return Err(malformed(format!(
                        "{at}: {name} \"{key}\": invalid value \"{bad}\""
                    )));
                }
                conditions.push(Condition {
                    operator,
                    key: key.clone(),
                    values: values.0.clone(),
                });
            }
        }
        Ok(conditions)
    }

    fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let actual = context
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v);
        let Some(actual) = actual else {
            return self.holds_when_absent();
        };
        // Several values OR; for a negated operator that means "matches none of them".
        let any = self
            .values
            .iter()
            .any(|expected| self.operator.test.compare(actual, expected));
        any != self.operator.negated
    }

    /// AWS: a missing key fails the condition, except `...IfExists` (holds), `Null: true`
    /// (holds), `ForAllValues:` (holds: no value fails it) and negated operators (holds: the
    /// key cannot equal what it must not).
    fn holds_when_absent(&self) -> bool {
        let operator = self.operator;
        if operator.test == Test::Null {
            return self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
        }
        operator.if_exists
            || match operator.set {
                Some(SetQualifier::AllValues) => true,
                Some(SetQualifier::AnyValue) => false,
                None => operator.negated,
            }
    }
}

impl Test {
    /// Whether `value` makes sense in a policy for this test.
    fn accepts(self, value: &str) -> bool {
        match self {
            Test::Numeric(..) => value.parse::<f64>().is_ok(),
            Test::Bool | Test::Null => {
                value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
            }
            _ => true,
        }
    }

    /// Whether the request's `actual` value matches the policy's `expected` one.
    fn compare(self, actual: &str, expected: &str) -> bool {
        match self {
            Test::StringEquals => actual == expected,
            Test::StringEqualsIgnoreCase => actual.to_lowercase() == expected.to_lowercase(),
            Test::StringLike => wildcard_match(expected, actual),
            Test::Numeric(ordering, or_equal) => match (actual.parse::<f64>(), expected.parse::<f64>()) {
                (Ok(a), Ok(e)) => a
                    .partial_cmp(&e)
                    .is_some_and(|o| o == ordering || (or_equal && o == Ordering::Equal)),
                _ => false,
            },
            Test::Bool => actual.eq_ignore_ascii_case(expected),
            Test::ArnLike => arn_like(expected, actual),
            // The key is present: only `Null: false` matches.
            Test::Null => expected.eq_ignore_ascii_case("false"),
        }
    }
}

/// AWS's `ArnLike`: each of the six colon-separated fields matched on its own, so a `*` does
/// not cross a `:` (except in the last field, the resource, which may contain colons).
fn arn_like(pattern: &str, arn: &str) -> bool {
    let pattern: Vec<&str> = pattern.splitn(6, ':').collect();
    let arn: Vec<&str> = arn.splitn(6, ':').collect();
    pattern.len() == 6 && arn.len() == 6 && pattern.iter().zip(&arn).all(|(p, a)| wildcard_match(p, a))
}

/// Matches `text` against `pattern`, where `*` is any run of characters and `?` one character.
/// Linear backtracking: on a mismatch, the last `*` takes one more character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` is in the pattern, and how much of the text it has taken so far.
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                last_star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match last_star {
                Some((star, taken)) => {
                    last_star = Some((star, taken + 1));
                    p = star + 1;
                    t = taken + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests;
