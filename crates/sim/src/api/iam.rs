//! IAM: roles, inline policies and instance profiles.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Iam for Sim {
    fn get_role(&self, who: &Credentials, role: &RoleArn) -> Result<RoleInfo> {
        self.call(Action::IamGetRole, who, |c, w| {
            c.check(w, c.action, role.as_str(), &[], None)?;
            let r = own_role(w, c, role)?;
            Ok(RoleInfo {
                arn: role.to_string(),
                trust_policy: r.trust.clone(),
                inline_policies: r.policies.iter().map(|(n, d)| (n.clone(), d.clone())).collect(),
            })
        })
    }

    fn create_role(
        &self,
        who: &Credentials,
        path: &str,
        name: &str,
        trust_policy: &str,
        tags: &[Tag],
    ) -> Result<RoleArn> {
        self.call(Action::IamCreateRole, who, |c, w| {
            let account = c.account().clone();
            check_path(c.action, path)?;
            let arn = format!("arn:aws:iam::{account}:role{path}{name}");
            c.check(w, c.action, &arn, &[], None)?;
            bulwark_cloud::policy::Policy::parse(trust_policy)
                .map_err(|e| CloudError::invalid(c.action, "MalformedPolicy", e.to_string()))?;
            let a = w.accounts.entry(account).or_default();
            if a.roles.contains_key(name) {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "EntityAlreadyExists",
                    format!("Role with name {name} already exists."),
                ));
            }
            a.roles.insert(
                name.to_owned(),
                Role {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    trust: trust_policy.to_owned(),
                    policies: Default::default(),
                    tags: tags.to_vec(),
                },
            );
            parse_id(c.action, "InternalError", &arn)
        })
    }

    fn delete_role(&self, who: &Credentials, role: &RoleArn) -> Result<()> {
        self.call(Action::IamDeleteRole, who, |c, w| {
            c.check(w, c.action, role.as_str(), &[], None)?;
            let r = own_role(w, c, role)?;
            if !r.policies.is_empty() {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "DeleteConflict",
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            let a = w.accounts.entry(c.account().clone()).or_default();
            if a.profiles
                .values()
                .any(|p| p.role.as_deref() == Some(role.name()))
            {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "DeleteConflict",
                    "Cannot delete entity, must remove roles from instance profile first.",
                ));
            }
            a.roles.remove(role.name());
            Ok(())
        })
    }

    fn put_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str, document: &str) -> Result<()> {
        self.call(Action::IamPutRolePolicy, who, |c, w| {
            c.check(w, c.action, role.as_str(), &[], None)?;
            bulwark_cloud::policy::Policy::parse(document)
                .map_err(|e| CloudError::invalid(c.action, "MalformedPolicy", e.to_string()))?;
            own_role(w, c, role)?;
            if let Some(r) = w
                .accounts
                .entry(c.account().clone())
                .or_default()
                .roles
                .get_mut(role.name())
            {
                r.policies.insert(name.to_owned(), document.to_owned());
            }
            Ok(())
        })
    }

    fn delete_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str) -> Result<()> {
        self.call(Action::IamDeleteRolePolicy, who, |c, w| {
            c.check(w, c.action, role.as_str(), &[], None)?;
            own_role(w, c, role)?;
            let r = w
                .accounts
                .entry(c.account().clone())
                .or_default()
                .roles
                .get_mut(role.name());
            match r.and_then(|r| r.policies.remove(name)) {
                Some(_) => Ok(()),
                None => Err(CloudError::not_found(
                    c.action,
                    "NoSuchEntity",
                    format!("The role policy with name {name} cannot be found."),
                )),
            }
        })
    }

    fn create_instance_profile(&self, who: &Credentials, path: &str, name: &str) -> Result<String> {
        self.call(Action::IamCreateInstanceProfile, who, |c, w| {
            let account = c.account().clone();
            check_path(c.action, path)?;
            let arn = profile_arn(&account, path, name);
            c.check(w, c.action, &arn, &[], None)?;
            let a = w.accounts.entry(account).or_default();
            if a.profiles.contains_key(name) {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "EntityAlreadyExists",
                    format!("Instance Profile {name} already exists."),
                ));
            }
            a.profiles.insert(
                name.to_owned(),
                Profile {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    role: None,
                    unseen_launches: 1,
                },
            );
            Ok(arn)
        })
    }

    fn delete_instance_profile(&self, who: &Credentials, profile: &str) -> Result<()> {
        self.call(Action::IamDeleteInstanceProfile, who, |c, w| {
            c.check(w, c.action, profile, &[], None)?;
            let name = own_profile(w, c, profile)?.name.clone();
            let a = w.accounts.entry(c.account().clone()).or_default();
            if a.profiles.get(&name).is_some_and(|p| p.role.is_some()) {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "DeleteConflict",
                    "Cannot delete entity, must remove roles from instance profile first.",
                ));
            }
            a.profiles.remove(&name);
            Ok(())
        })
    }

    fn add_role_to_instance_profile(&self, who: &Credentials, profile: &str, role: &RoleArn) -> Result<()> {
        self.call(Action::IamAddRoleToInstanceProfile, who, |c, w| {
            c.check(w, c.action, profile, &[], None)?;
            own_role(w, c, role)?;
            let p = own_profile(w, c, profile)?;
            if p.role.is_some() {
                return Err(CloudError::new(
                    c.action,
                    ErrorKind::Conflict,
                    "LimitExceeded",
                    "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1",
                ));
            }
            p.role = Some(role.name().to_owned());
            Ok(())
        })
    }

    fn remove_role_from_instance_profile(
        &self,
        who: &Credentials,
        profile: &str,
        role: &RoleArn,
    ) -> Result<()> {
        self.call(Action::IamRemoveRoleFromInstanceProfile, who, |c, w| {
            c.check(w, c.action, profile, &[], None)?;
            let p = own_profile(w, c, profile)?;
            if p.role.as_deref() != Some(role.name()) {
                return Err(CloudError::not_found(
                    c.action,
                    "NoSuchEntity",
                    format!("{role} is not in {profile}"),
                ));
            }
            p.role = None;
            Ok(())
        })
    }

    fn simulate(&self, who: &Credentials, role: &RoleArn, checks: &[(Action, String)]) -> Result<Vec<bool>> {
        self.call(Action::IamSimulatePrincipalPolicy, who, |c, w| {
            c.check(w, c.action, role.as_str(), &[], None)?;
            let r = own_role(w, c, role)?;
            let policies = r
                .policies
                .values()
                .map(|d| bulwark_cloud::policy::Policy::parse(d))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| CloudError::invalid(c.action, "MalformedPolicyDocument", e.to_string()))?;
            let principal = bulwark_cloud::policy::Principal::role(role);
            let context = std::collections::BTreeMap::new();
            // Identity policies only, as AWS's simulator without a resource policy.
            Ok(checks
                .iter()
                .map(|(action, resource)| {
                    let request = bulwark_cloud::policy::Request {
                        principal: &principal,
                        action: *action,
                        resource,
                        context: &context,
                    };
                    policies
                        .iter()
                        .any(|p| p.evaluate_identity(&request).is_allowed())
                        && !policies.iter().any(|p| {
                            p.evaluate_identity(&request) == bulwark_cloud::policy::Decision::ExplicitDeny
                        })
                })
                .collect())
        })
    }

    fn list_instance_profiles_for_role(&self, who: &Credentials, role: &RoleArn) -> Result<Vec<String>> {
        self.call(Action::IamListInstanceProfilesForRole, who, |c, w| {
            c.check(w, c.action, role.as_str(), &[], None)?;
            own_role(w, c, role)?;
            let a = w.accounts.entry(c.account().clone()).or_default();
            Ok(a.profiles
                .values()
                .filter(|p| p.role.as_deref() == Some(role.name()))
                .map(|p| profile_arn(c.account(), &p.path, &p.name))
                .collect())
        })
    }
}
