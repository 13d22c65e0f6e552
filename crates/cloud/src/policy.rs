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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOME: &str = "111111111111";
    const OTHER: &str = "222222222222";
    const KEY: &str = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn account(id: &str) -> AccountId {
        id.parse().unwrap()
    }

    fn role(account_id: &str, name: &str) -> Principal {
        Principal::Role {
            arn: format!("arn:aws:iam::{account_id}:role/bulwark/{name}"),
            account: account(account_id),
        }
    }

    fn policy(json: &str) -> Policy {
        Policy::parse(json).unwrap()
    }

    fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Decides `action` on `resource` by `principal` with `context`.
    fn decide(
        principal: &Principal,
        action: &str,
        resource: &str,
        context: &BTreeMap<String, String>,
        identity: &[&Policy],
        resource_policy: Option<ResourcePolicy>,
    ) -> Decision {
        let request = Request {
            principal,
            action: action.parse().unwrap(),
            resource,
            context,
        };
        authorize(&request, identity, resource_policy)
    }

    fn identity_decision(document: &Policy, action: &str, resource: &str) -> Decision {
        let principal = role(HOME, "Appliance");
        let context = BTreeMap::new();
        document.evaluate_identity(&Request {
            principal: &principal,
            action: action.parse().unwrap(),
            resource,
            context: &context,
        })
    }

    fn key_policy<'a>(document: &'a Policy, owner: &'a AccountId) -> Option<ResourcePolicy<'a>> {
        Some(ResourcePolicy {
            document,
            owner,
            kind: ResourcePolicyKind::KeyPolicy,
        })
    }

    fn trust_policy<'a>(document: &'a Policy, owner: &'a AccountId) -> Option<ResourcePolicy<'a>> {
        Some(ResourcePolicy {
            document,
            owner,
            kind: ResourcePolicyKind::TrustPolicy,
        })
    }

    fn malformed_message(json: &str) -> String {
        match Policy::parse(json) {
            Err(PolicyError::Malformed(message)) => message,
            Ok(_) => panic!("accepted {json}"),
        }
    }

    // ---- matching ---------------------------------------------------------------------------

    #[test]
    fn action_wildcards_are_case_insensitive() {
        assert!(action_matches("*", "ec2:CreateVolume"));
        assert!(action_matches("ec2:*", "ec2:CreateVolume"));
        assert!(action_matches("ec2:Create*", "ec2:createvolume"));
        assert!(action_matches("EC2:CREATEVOLUME", "ec2:CreateVolume"));
        assert!(action_matches("ec2:?reateVolume", "ec2:CreateVolume"));
        assert!(action_matches("ec2:*Volume*", "ec2:DescribeVolumes"));
        assert!(!action_matches("ec2:Create*", "ec2:DeleteVolume"));
        assert!(!action_matches("s3:*", "ec2:CreateVolume"));
        assert!(!action_matches("ec2:CreateVolume", "ec2:CreateVolumes"));
        assert!(!action_matches("ec2:?", "ec2:"));
    }

    #[test]
    fn resource_wildcards_are_case_sensitive_and_span_separators() {
        let volume = "arn:aws:ec2:eu-west-1:111111111111:volume/vol-0123";
        assert!(resource_matches("*", volume));
        assert!(resource_matches("arn:aws:ec2:*:111111111111:volume/*", volume));
        assert!(resource_matches("arn:aws:ec2:*", volume));
        assert!(resource_matches(
            "arn:aws:ec2:eu-west-?:111111111111:volume/vol-0123",
            volume
        ));
        assert!(!resource_matches("arn:aws:ec2:*:111111111111:VOLUME/*", volume));
        assert!(!resource_matches("arn:aws:ec2:*:222222222222:volume/*", volume));
        assert!(!resource_matches("arn:aws:ec2:*:111111111111:snapshot/*", volume));
        // An action without resource-level permissions is requested on "*": only "*" covers it.
        assert!(resource_matches("*", "*"));
        assert!(!resource_matches("arn:aws:ec2:*", "*"));
    }

    #[test]
    fn wildcard_backtracks() {
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(wildcard_match("*ab", "aab"));
        assert!(wildcard_match("**", ""));
        assert!(!wildcard_match("a*b", "aXbY"));
        assert!(!wildcard_match("?", ""));
    }

    #[test]
    fn not_action_allows_everything_else() {
        let document =
            policy(r#"{"Statement": {"Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "*"}}"#);
        assert_eq!(
            identity_decision(&document, "ec2:CreateVolume", "*"),
            Decision::Allow
        );
        assert_eq!(
            identity_decision(&document, "iam:CreateRole", "*"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            identity_decision(&document, "STS:AssumeRole", "*"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_resource_allows_everything_else() {
        let document = policy(
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*",
                "NotResource": "arn:aws:s3:::audit/*"}}"#,
        );
        assert_eq!(
            identity_decision(&document, "s3:GetObject", "arn:aws:s3:::repo/data/1"),
            Decision::Allow
        );
        assert_eq!(
            identity_decision(&document, "s3:GetObject", "arn:aws:s3:::audit/log"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn identity_policy_without_match_denies_implicitly() {
        let document = policy(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*",
                "Resource": "*"}]}"#,
        );
        assert_eq!(
            identity_decision(&document, "ec2:DescribeVolumes", "*"),
            Decision::Allow
        );
        assert_eq!(
            identity_decision(&document, "ec2:DeleteVolume", "*"),
            Decision::ImplicitDeny
        );
        assert!(!Decision::ImplicitDeny.is_allowed() && !Decision::ExplicitDeny.is_allowed());
    }

    // ---- explicit deny ----------------------------------------------------------------------

    #[test]
    fn explicit_deny_overrides_allow_in_the_same_policy_and_across_policies() {
        let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}}"#);
        let deny = policy(
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Sid": "NoDelete", "Effect": "Deny", "Action": "ec2:Delete*", "Resource": "*"}]}"#,
        );
        assert_eq!(
            identity_decision(&deny, "ec2:DeleteSnapshot", "*"),
            Decision::ExplicitDeny
        );
        let principal = role(HOME, "Appliance");
        let ctx = BTreeMap::new();
        let decision = decide(
            &principal,
            "ec2:DeleteSnapshot",
            "*",
            &ctx,
            &[&allow, &deny],
            None,
        );
        assert_eq!(decision, Decision::ExplicitDeny);
        let decision = decide(
            &principal,
            "ec2:CreateSnapshot",
            "*",
            &ctx,
            &[&allow, &deny],
            None,
        );
        assert_eq!(decision, Decision::Allow);
    }

    #[test]
    fn resource_policy_deny_overrides_identity_allow_and_identity_deny_overrides_resource_allow() {
        let owner = account(HOME);
        let queue = "arn:aws:sqs:eu-west-1:111111111111:bulwark-jobs";
        let principal = role(HOME, "Appliance");
        let ctx = BTreeMap::new();
        let allow_all = policy(r#"{"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}"#);
        let deny_queue = policy(
            r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
                "Resource": "*"}}"#,
        );
        let ordinary = |document| {
            Some(ResourcePolicy {
                document,
                owner: &owner,
                kind: ResourcePolicyKind::Ordinary,
            })
        };
        let decision = decide(
            &principal,
            "sqs:SendMessage",
            queue,
            &ctx,
            &[&allow_all],
            ordinary(&deny_queue),
        );
        assert_eq!(decision, Decision::ExplicitDeny);

        let allow_queue = policy(&format!(
            r#"{{"Statement": {{"Effect": "Allow",
                "Principal": {{"AWS": "arn:aws:iam::{HOME}:role/bulwark/Appliance"}},
                "Action": "sqs:*", "Resource": "{queue}"}}}}"#
        ));
        let deny_identity =
            policy(r#"{"Statement": {"Effect": "Deny", "Action": "sqs:*", "Resource": "*"}}"#);
        let decision = decide(
            &principal,
            "sqs:SendMessage",
            queue,
            &ctx,
            &[&deny_identity],
            ordinary(&allow_queue),
        );
        assert_eq!(decision, Decision::ExplicitDeny);
    }

    #[test]
    fn deny_naming_an_account_denies_its_roles() {
        let owner = account(HOME);
        let document = policy(&format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}},
                {{"Effect": "Deny", "Principal": {{"AWS": "{OTHER}"}}, "Action": "kms:Decrypt",
                    "Resource": "*"}}]}}"#
        ));
        let ctx = BTreeMap::new();
        let principal = role(OTHER, "Reader");
        let request = Request {
            principal: &principal,
            action: Action::KmsDecrypt,
            resource: KEY,
            context: &ctx,
        };
        assert!(document.evaluate_resource(&request).denies);
        let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#);
        let decision = decide(
            &principal,
            "kms:Decrypt",
            KEY,
            &ctx,
            &[&allow],
            key_policy(&document, &owner),
        );
        assert_eq!(decision, Decision::ExplicitDeny);
    }

    #[test]
    fn not_principal_deny_exempts_only_a_role_listed_with_its_account() {
        let owner = account(HOME);
        let appliance = format!("arn:aws:iam::{HOME}:role/bulwark/Appliance");
        let statement = |principals: &str| {
            policy(&format!(
                r#"{{"Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "{HOME}"}},
                    "Action": "kms:*", "Resource": "*"}},
                    {{"Effect": "Deny", "NotPrincipal": {{"AWS": {principals}}}, "Action": "kms:*",
                        "Resource": "*"}}]}}"#
            ))
        };
        let both = statement(&format!(r#"["{appliance}", "arn:aws:iam::{HOME}:root"]"#));
        let role_only = statement(&format!(r#""{appliance}""#));
        let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#);
        let ctx = BTreeMap::new();
        let appliance_role = role(HOME, "Appliance");
        let other_role = role(HOME, "Other");
        let run = |who: &Principal, document| {
            decide(
                who,
                "kms:Decrypt",
                KEY,
                &ctx,
                &[&allow],
                key_policy(document, &owner),
            )
        };
        assert_eq!(run(&appliance_role, &both), Decision::Allow);
        assert_eq!(run(&other_role, &both), Decision::ExplicitDeny);
        assert_eq!(run(&appliance_role, &role_only), Decision::ExplicitDeny);
    }

    // ---- conditions -------------------------------------------------------------------------

    fn external_id_trust() -> Policy {
        Policy::parse_resource(&format!(
            r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow",
                "Principal": {{"AWS": "arn:aws:iam::{OTHER}:role/bulwark/Appliance"}},
                "Action": "sts:AssumeRole",
                "Condition": {{"StringEquals": {{"sts:ExternalId": "bulwark-7f3a"}}}}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn trust_policy_external_id_must_be_present_and_right() {
        let owner = account(HOME);
        let trust = external_id_trust();
        let principal = role(OTHER, "Appliance");
        let target = format!("arn:aws:iam::{HOME}:role/BulwarkBackup");
        let may_assume =
            policy(r#"{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}}"#);
        let run = |ctx: &BTreeMap<String, String>| {
            decide(
                &principal,
                "sts:AssumeRole",
                &target,
                ctx,
                &[&may_assume],
                trust_policy(&trust, &owner),
            )
        };
        assert_eq!(run(&context(&[])), Decision::ImplicitDeny);
        assert_eq!(
            run(&context(&[("sts:ExternalId", "wrong")])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            run(&context(&[("sts:ExternalId", "BULWARK-7F3A")])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            run(&context(&[("sts:ExternalId", "bulwark-7f3a")])),
            Decision::Allow
        );
        // Condition keys are case-insensitive.
        assert_eq!(
            run(&context(&[("STS:externalid", "bulwark-7f3a")])),
            Decision::Allow
        );
    }

    #[test]
    fn grant_for_aws_resource_bool_condition() {
        let owner = account(HOME);
        let document = policy(&format!(
            r#"{{"Statement": {{"Effect": "Allow",
                "Principal": {{"AWS": "arn:aws:iam::{HOME}:role/bulwark/Appliance"}},
                "Action": ["kms:CreateGrant", "kms:ListGrants"], "Resource": "*",
                "Condition": {{"Bool": {{"kms:GrantIsForAWSResource": true}}}}}}}}"#
        ));
        let principal = role(HOME, "Appliance");
        let run = |ctx: &BTreeMap<String, String>| {
            decide(
                &principal,
                "kms:CreateGrant",
                KEY,
                ctx,
                &[],
                key_policy(&document, &owner),
            )
        };
        assert_eq!(
            run(&context(&[("kms:GrantIsForAWSResource", "true")])),
            Decision::Allow
        );
        assert_eq!(
            run(&context(&[("kms:grantisforawsresource", "TRUE")])),
            Decision::Allow
        );
        assert_eq!(
            run(&context(&[("kms:GrantIsForAWSResource", "false")])),
            Decision::ImplicitDeny
        );
        assert_eq!(run(&context(&[])), Decision::ImplicitDeny);
    }

    fn condition_holds(condition: &str, ctx: &[(&str, &str)]) -> bool {
        let document = policy(&format!(
            r#"{{"Statement": {{"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {condition}}}}}"#
        ));
        let principal = role(HOME, "Appliance");
        let ctx = context(ctx);
        let request = Request {
            principal: &principal,
            action: Action::Ec2CreateVolume,
            resource: "*",
            context: &ctx,
        };
        document.evaluate_identity(&request).is_allowed()
    }

    #[test]
    fn if_exists_holds_when_the_key_is_absent() {
        let condition = r#"{"StringEqualsIfExists": {"aws:RequestedRegion": "eu-west-1"}}"#;
        assert!(condition_holds(condition, &[]));
        assert!(condition_holds(
            condition,
            &[("aws:RequestedRegion", "eu-west-1")]
        ));
        assert!(!condition_holds(
            condition,
            &[("aws:RequestedRegion", "us-east-1")]
        ));
        let plain = r#"{"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}"#;
        assert!(!condition_holds(plain, &[]));
    }

    #[test]
    fn null_checks_presence() {
        let absent = r#"{"Null": {"aws:SourceArn": "true"}}"#;
        let present = r#"{"Null": {"aws:SourceArn": false}}"#;
        let arn = [("aws:SourceArn", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1")];
        assert!(condition_holds(absent, &[]));
        assert!(!condition_holds(absent, &arn));
        assert!(!condition_holds(present, &[]));
        assert!(condition_holds(present, &arn));
    }

    #[test]
    fn negated_operators_hold_when_the_key_is_absent_and_require_no_value_to_match() {
        let not_equals = r#"{"StringNotEquals": {"aws:PrincipalAccount": ["111111111111", "222222222222"]}}"#;
        assert!(condition_holds(not_equals, &[]));
        assert!(condition_holds(
            not_equals,
            &[("aws:PrincipalAccount", "333333333333")]
        ));
        assert!(!condition_holds(
            not_equals,
            &[("aws:PrincipalAccount", "222222222222")]
        ));
        let not_like = r#"{"ArnNotLike": {"aws:SourceArn": "arn:aws:sqs:*:*:bulwark-*"}}"#;
        assert!(condition_holds(not_like, &[]));
        assert!(!condition_holds(
            not_like,
            &[("aws:SourceArn", "arn:aws:sqs:eu-west-1:111111111111:bulwark-jobs")]
        ));
        assert!(condition_holds(
            not_like,
            &[("aws:SourceArn", "arn:aws:sqs:eu-west-1:111111111111:other")]
        ));
    }

    #[test]
    fn several_values_or_and_several_keys_and_operators_and() {
        let condition = r#"{"StringEquals": {"ec2:Region": ["eu-west-1", "eu-west-2"],
            "ec2:Encrypted": "true"},
            "StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/bulwark/*"}}"#;
        let role_arn = (
            "aws:PrincipalArn",
            "arn:aws:iam::111111111111:role/bulwark/Appliance",
        );
        assert!(condition_holds(
            condition,
            &[("ec2:Region", "eu-west-2"), ("ec2:Encrypted", "true"), role_arn]
        ));
        assert!(!condition_holds(
            condition,
            &[("ec2:Region", "us-east-1"), ("ec2:Encrypted", "true"), role_arn]
        ));
        assert!(!condition_holds(
            condition,
            &[("ec2:Region", "eu-west-1"), role_arn]
        ));
        assert!(!condition_holds(
            condition,
            &[("ec2:Region", "eu-west-1"), ("ec2:Encrypted", "true")]
        ));
    }

    #[test]
    fn string_arn_and_numeric_operators() {
        assert!(condition_holds(
            r#"{"StringEqualsIgnoreCase": {"k": "ABC"}}"#,
            &[("k", "abc")]
        ));
        assert!(!condition_holds(
            r#"{"StringNotEqualsIgnoreCase": {"k": "ABC"}}"#,
            &[("k", "abc")]
        ));
        assert!(!condition_holds(
            r#"{"StringEquals": {"k": "ABC"}}"#,
            &[("k", "abc")]
        ));
        assert!(condition_holds(
            r#"{"StringLike": {"k": "vol-*"}}"#,
            &[("k", "vol-1")]
        ));
        // ArnLike matches field by field: a `*` in the region field does not cross into others.
        let arn_like = r#"{"ArnLike": {"aws:SourceArn": "arn:aws:ec2:*:111111111111:instance/*"}}"#;
        assert!(condition_holds(
            arn_like,
            &[("aws:SourceArn", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1")]
        ));
        assert!(!condition_holds(
            arn_like,
            &[("aws:SourceArn", "arn:aws:ec2:eu-west-1:222222222222:instance/i-1")]
        ));
        let across = r#"{"ArnEquals": {"aws:SourceArn": "arn:aws:ec2:*:instance/*"}}"#;
        assert!(!condition_holds(
            across,
            &[("aws:SourceArn", "arn:aws:ec2:eu-west-1:111111111111:instance/i-1")]
        ));
        let size = r#"{"NumericLessThanEquals": {"ec2:VolumeSize": 100}}"#;
        assert!(condition_holds(size, &[("ec2:VolumeSize", "100")]));
        assert!(condition_holds(size, &[("ec2:VolumeSize", "8")]));
        assert!(!condition_holds(size, &[("ec2:VolumeSize", "101")]));
        assert!(!condition_holds(size, &[("ec2:VolumeSize", "big")]));
        assert!(condition_holds(
            r#"{"NumericGreaterThan": {"n": "2"}}"#,
            &[("n", "3")]
        ));
        assert!(!condition_holds(
            r#"{"NumericNotEquals": {"n": [1, 2]}}"#,
            &[("n", "2.0")]
        ));
    }

    #[test]
    fn set_qualifiers_on_single_values() {
        let any = r#"{"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner", "team"]}}"#;
        let all = r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["owner", "team"]}}"#;
        assert!(condition_holds(any, &[("aws:TagKeys", "team")]));
        assert!(!condition_holds(any, &[("aws:TagKeys", "cost")]));
        assert!(!condition_holds(any, &[]));
        assert!(condition_holds(all, &[("aws:TagKeys", "owner")]));
        assert!(!condition_holds(all, &[("aws:TagKeys", "cost")]));
        assert!(condition_holds(all, &[]));
    }

    // ---- key policies -----------------------------------------------------------------------

    fn key_policy_naming(principal: &str) -> Policy {
        Policy::parse_resource(&format!(
            r#"{{"Statement": {{"Sid": "Use", "Effect": "Allow", "Principal": {{"AWS": {principal}}},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn cross_account_key_use_needs_both_key_policy_and_iam() {
        let owner = account(HOME);
        let caller = role(OTHER, "Appliance");
        let ctx = BTreeMap::new();
        let iam = policy(&format!(
            r#"{{"Statement": {{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "{KEY}"}}}}"#
        ));
        let grants_account = key_policy_naming(&format!(r#""arn:aws:iam::{OTHER}:root""#));
        let grants_role = key_policy_naming(&format!(r#""arn:aws:iam::{OTHER}:role/bulwark/Appliance""#));
        let grants_nobody = key_policy_naming(&format!(r#""{HOME}""#));
        let run = |identity: &[&Policy], key| {
            decide(
                &caller,
                "kms:Decrypt",
                KEY,
                &ctx,
                identity,
                key_policy(key, &owner),
            )
        };
        assert_eq!(run(&[&iam], &grants_account), Decision::Allow);
        assert_eq!(run(&[&iam], &grants_role), Decision::Allow);
        // The key policy alone is not enough, even naming the role.
        assert_eq!(run(&[], &grants_account), Decision::ImplicitDeny);
        assert_eq!(run(&[], &grants_role), Decision::ImplicitDeny);
        // IAM alone is not enough.
        assert_eq!(run(&[&iam], &grants_nobody), Decision::ImplicitDeny);
        // IAM for another action does not help.
        assert_eq!(
            decide(
                &caller,
                "kms:Encrypt",
                KEY,
                &ctx,
                &[&iam],
                key_policy(&grants_account, &owner)
            ),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn same_account_key_policy_naming_root_delegates_to_iam() {
        let owner = account(HOME);
        let caller = role(HOME, "Appliance");
        let ctx = BTreeMap::new();
        let iam = policy(r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#);
        let default_policy = key_policy_naming(&format!(r#""arn:aws:iam::{HOME}:root""#));
        let run = |identity: &[&Policy], key| {
            decide(
                &caller,
                "kms:Decrypt",
                KEY,
                &ctx,
                identity,
                key_policy(key, &owner),
            )
        };
        assert_eq!(run(&[&iam], &default_policy), Decision::Allow);
        assert_eq!(run(&[], &default_policy), Decision::ImplicitDeny);
        // Naming the role itself needs no IAM policy.
        let names_role = key_policy_naming(&format!(r#"["arn:aws:iam::{HOME}:role/bulwark/Appliance"]"#));
        assert_eq!(run(&[], &names_role), Decision::Allow);
        // A key policy that names neither: IAM cannot grant use of the key.
        let names_other = key_policy_naming(&format!(r#""arn:aws:iam::{HOME}:role/Other""#));
        assert_eq!(run(&[&iam], &names_other), Decision::ImplicitDeny);
    }

    #[test]
    fn root_user_is_named_by_its_account_and_has_full_access_at_home() {
        let owner = account(HOME);
        let root = Principal::Account(account(HOME));
        let ctx = BTreeMap::new();
        let default_policy = key_policy_naming(&format!(r#""{HOME}""#));
        let decision = decide(
            &root,
            "kms:Decrypt",
            KEY,
            &ctx,
            &[],
            key_policy(&default_policy, &owner),
        );
        assert_eq!(decision, Decision::Allow);
        assert_eq!(
            decide(&root, "ec2:CreateVolume", "*", &ctx, &[], None),
            Decision::Allow
        );
        let names_role = key_policy_naming(&format!(r#""arn:aws:iam::{HOME}:role/Admin""#));
        let decision = decide(
            &root,
            "kms:Decrypt",
            KEY,
            &ctx,
            &[],
            key_policy(&names_role, &owner),
        );
        assert_eq!(decision, Decision::ImplicitDeny);
        // The root user of another account needs the key policy to name its account.
        let stranger = Principal::Account(account(OTHER));
        let decision = decide(
            &stranger,
            "kms:Decrypt",
            KEY,
            &ctx,
            &[],
            key_policy(&default_policy, &owner),
        );
        assert_eq!(decision, Decision::ImplicitDeny);
    }

    // ---- trust policies ---------------------------------------------------------------------

    #[test]
    fn trust_policy_naming_a_role_directly() {
        let owner = account(HOME);
        let trust = Policy::parse_resource(&format!(
            r#"{{"Statement": {{"Effect": "Allow",
                "Principal": {{"AWS": ["arn:aws:iam::{HOME}:role/bulwark/Appliance"]}},
                "Action": "sts:AssumeRole"}}}}"#
        ))
        .unwrap();
        let ctx = BTreeMap::new();
        let target = format!("arn:aws:iam::{HOME}:role/Worker");
        let run = |who: &Principal| {
            decide(
                who,
                "sts:AssumeRole",
                &target,
                &ctx,
                &[],
                trust_policy(&trust, &owner),
            )
        };
        assert_eq!(run(&role(HOME, "Appliance")), Decision::Allow);
        assert_eq!(run(&role(HOME, "Other")), Decision::ImplicitDeny);
        assert_eq!(
            run(&Principal::Service("ec2.amazonaws.com".into())),
            Decision::ImplicitDeny
        );
        // A trust policy does not cover other actions.
        let decision = decide(
            &role(HOME, "Appliance"),
            "sts:TagSession",
            &target,
            &ctx,
            &[],
            trust_policy(&trust, &owner),
        );
        assert_eq!(decision, Decision::ImplicitDeny);
    }

    #[test]
    fn trust_policy_for_a_service() {
        let owner = account(HOME);
        let trust = Policy::parse_resource(
            r#"{"Statement": {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com",
                "ssm.amazonaws.com"]},
                "Action": "sts:AssumeRole"}}"#,
        )
        .unwrap();
        let ctx = BTreeMap::new();
        let target = format!("arn:aws:iam::{HOME}:role/Worker");
        let allow_everything =
            policy(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#);
        let run = |who: &Principal| {
            decide(
                who,
                "sts:AssumeRole",
                &target,
                &ctx,
                &[&allow_everything],
                trust_policy(&trust, &owner),
            )
        };
        assert_eq!(
            run(&Principal::Service("ec2.amazonaws.com".into())),
            Decision::Allow
        );
        assert_eq!(
            run(&Principal::Service("ssm.amazonaws.com".into())),
            Decision::Allow
        );
        assert_eq!(
            run(&Principal::Service("lambda.amazonaws.com".into())),
            Decision::ImplicitDeny
        );
        // Roles of the account are not services.
        assert_eq!(run(&role(HOME, "Appliance")), Decision::ImplicitDeny);
        // A service has no identity policies: without a resource policy nothing allows it.
        let ec2 = Principal::Service("ec2.amazonaws.com".into());
        assert_eq!(
            decide(&ec2, "ec2:CreateVolume", "*", &ctx, &[&allow_everything], None),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn anyone_principal_forms() {
        let owner = account(HOME);
        let ctx = BTreeMap::new();
        let queue = "arn:aws:sqs:eu-west-1:111111111111:jobs";
        for principal in [r#""*""#, r#"{"AWS": "*"}"#, r#"{"AWS": ["*"]}"#] {
            let document = Policy::parse_resource(&format!(
                r#"{{"Statement": {{"Effect": "Allow", "Principal": {principal},
                    "Action": "sqs:SendMessage", "Resource": "{queue}"}}}}"#
            ))
            .unwrap();
            let ordinary = Some(ResourcePolicy {
                document: &document,
                owner: &owner,
                kind: ResourcePolicyKind::Ordinary,
            });
            let decision = decide(&role(HOME, "Any"), "sqs:SendMessage", queue, &ctx, &[], ordinary);
            assert_eq!(decision, Decision::Allow, "{principal}");
            // Across accounts the caller's IAM must allow too.
            let decision = decide(&role(OTHER, "Any"), "sqs:SendMessage", queue, &ctx, &[], ordinary);
            assert_eq!(decision, Decision::ImplicitDeny, "{principal}");
        }
    }

    #[test]
    fn same_account_ordinary_resource_policy_adds_to_iam() {
        let owner = account(HOME);
        let ctx = BTreeMap::new();
        let queue = "arn:aws:sqs:eu-west-1:111111111111:jobs";
        let caller = role(HOME, "Appliance");
        let iam = policy(r#"{"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}"#);
        let names_account = Policy::parse_resource(&format!(
            r#"{{"Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{HOME}"}}, "Action": "sqs:*",
                "Resource": "{queue}"}}}}"#
        ))
        .unwrap();
        let ordinary = Some(ResourcePolicy {
            document: &names_account,
            owner: &owner,
            kind: ResourcePolicyKind::Ordinary,
        });
        assert_eq!(
            decide(&caller, "sqs:SendMessage", queue, &ctx, &[&iam], ordinary),
            Decision::Allow
        );
        assert_eq!(
            decide(&caller, "sqs:SendMessage", queue, &ctx, &[], ordinary),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&caller, "sqs:SendMessage", queue, &ctx, &[&iam], None),
            Decision::Allow
        );
        assert_eq!(
            decide(&caller, "sqs:SendMessage", queue, &ctx, &[], None),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn principal_from_a_role_arn() {
        let arn: RoleArn = format!("arn:aws:iam::{HOME}:role/bulwark/Appliance")
            .parse()
            .unwrap();
        assert_eq!(Principal::role(&arn), role(HOME, "Appliance"));
        assert_eq!(Principal::role(&arn).account(), Some(&account(HOME)));
        assert_eq!(Principal::Service("ec2.amazonaws.com".into()).account(), None);
    }

    // ---- malformed documents ----------------------------------------------------------------

    #[test]
    fn malformed_documents_are_rejected_with_what_and_where() {
        let cases = [
            (r#"{"Statement": "#, "invalid JSON"),
            (r#"[]"#, "must be a JSON object"),
            (r#"{"Version": "2012-10-17"}"#, "missing field `Statement`"),
            (r#"{"Version": "2020-01-01", "Statement": []}"#, "Version must be"),
            (
                r#"{"Statement": [{"Sid": "A", "Effect": "Permit", "Action": "*", "Resource": "*"}]}"#,
                r#"statement 0 (Sid "A"): Effect: unknown variant `Permit`, expected `Allow` or `Deny`"#,
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Action": "*",
                    "Resource": "*"}]}"#,
                "statement 1: missing field `Effect`",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#,
                "statement 0: missing Action or NotAction",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "NotAction": "iam:*", "Resource": "*"}}"#,
                "has both Action and NotAction",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"}}"#,
                "has both Resource and NotResource",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
                "statement 0: Action: expected a string or a non-empty array of strings",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "CreateVolume", "Resource": "*"}}"#,
                "must be prefixed by a service",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "vol-1"}}"#,
                "must be \"*\" or an ARN",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resouce": "*"}}"#,
                "statement 0: Resouce: unknown field `Resouce`",
            ),
            (
                r#"{"Statement": {"Sid": "T", "Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"StringEqual": {"k": "v"}}}}"#,
                r#"statement 0 (Sid "T"): unknown or unsupported condition operator "StringEqual""#,
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                    "Condition": {"DateLessThan": {"k": "v"}}}}"#,
                "unsupported condition operator \"DateLessThan\"",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                    "Condition": {"NullIfExists": {"k": "true"}}}}"#,
                "condition operator \"NullIfExists\"",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                    "Condition": {"Bool": {"k": "yes"}}}}"#,
                r#"Bool "k": invalid value "yes""#,
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                    "Condition": {"NumericEquals": {"k": "x"}}}}"#,
                "invalid value",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                    "Condition": {"StringEquals": {"k": {}}}}}"#,
                "needs a string, number, boolean",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "*"}}"#,
                r#"invalid principal "bob""#,
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::*:root"},
                    "Action": "*"}}"#,
                "wildcards cannot match part of a principal",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": {"Users": "x"}, "Action": "*"}}"#,
                r#"unknown principal type "Users""#,
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": "me", "Action": "*"}}"#,
                "Principal must be",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Principal": "*", "NotPrincipal": "*", "Action": "*"}}"#,
                "has both Principal and NotPrincipal",
            ),
            (
                r#"{"Statement": [{"Sid": "X", "Effect": "Allow", "Action": "*"}, {"Sid": "X",
                    "Effect": "Deny", "Action": "*"}]}"#,
                r#"duplicate Sid "X""#,
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(json, expected)| (json, expected, malformed_message(json)))
            .filter(|(_, expected, message)| !message.contains(*expected))
            .map(|(json, expected, message)| format!("{json}: {message:?} does not say {expected:?}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let error = Policy::parse("{").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("malformed policy document: invalid JSON"));
    }

    #[test]
    fn identity_and_resource_policies_have_their_own_requirements() {
        let no_resource = r#"{"Statement": {"Sid": "S", "Effect": "Allow", "Action": "ec2:*"}}"#;
        assert!(Policy::parse(no_resource).is_ok());
        let Err(PolicyError::Malformed(message)) = Policy::parse_identity(no_resource) else {
            panic!("identity policy without Resource accepted");
        };
        assert!(
            message.contains(r#"statement 0 (Sid "S"): missing Resource"#),
            "{message}"
        );
        let with_principal =
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}"#;
        assert!(Policy::parse_identity(with_principal).is_err());
        assert!(Policy::parse_resource(with_principal).is_ok());
        let Err(PolicyError::Malformed(message)) =
            Policy::parse_resource(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#)
        else {
            panic!("resource policy without Principal accepted");
        };
        assert!(
            message.contains("statement 0: missing Principal or NotPrincipal"),
            "{message}"
        );
    }

    #[test]
    fn accepted_principal_forms() {
        let json = r#"{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
            "AWS": ["123456789012", "arn:aws:iam::123456789012:root", "arn:aws-cn:iam::123456789012:role/a/b",
                    "arn:aws:sts::123456789012:assumed-role/b/session"],
            "Service": "ec2.amazonaws.com", "Federated": "cognito-identity.amazonaws.com"}}}"#;
        assert!(Policy::parse_resource(json).is_ok());
    }

    // ---- properties -------------------------------------------------------------------------

    proptest! {
        #[test]
        fn star_matches_every_action(action in "[a-z0-9-]{1,12}:[A-Za-z0-9*?]{0,30}") {
            prop_assert!(action_matches("*", &action));
        }

        #[test]
        fn an_action_matches_itself_in_any_case(
            action in "[a-z0-9-]{1,12}:[A-Za-z0-9]{1,30}",
            upper in any::<bool>(),
        ) {
            let pattern = if upper { action.to_uppercase() } else { action.to_lowercase() };
            prop_assert!(action_matches(&pattern, &action));
            let service = action.split(':').next().unwrap_or_default();
            let service_wide = format!("{service}:*");
            prop_assert!(action_matches(&service_wide, &action));
        }

        #[test]
        fn a_resource_matches_itself_and_its_prefix_star(
            resource in "arn:aws:[a-z0-9]{1,5}:[a-z0-9-]{0,12}:[0-9]{12}:[a-zA-Z0-9/_:-]{1,30}",
            cut in 0usize..60,
        ) {
            prop_assert!(resource_matches(&resource, &resource));
            let prefix: String = resource.chars().take(cut).collect();
            let pattern = format!("{prefix}*");
            prop_assert!(resource_matches(&pattern, &resource));
        }

        #[test]
        fn a_deny_anywhere_wins(allows in 0usize..4, deny_at in 0usize..4) {
            let allow = policy(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#);
            let deny = policy(r#"{"Statement": {"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}}"#);
            let mut documents = vec![&allow; allows];
            documents.insert(deny_at.min(allows), &deny);
            let principal = role(HOME, "Appliance");
            let ctx = BTreeMap::new();
            let decision = decide(&principal, "ec2:RunInstances", "*", &ctx, &documents, None);
            prop_assert_eq!(decision, Decision::ExplicitDeny);
        }
    }
}
