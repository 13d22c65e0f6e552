//! STS: identities and role sessions, with trust policies and external ids enforced.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Sts for Sim {
    fn caller_identity(&self, who: &Credentials) -> Result<CallerIdentity> {
        self.call(Action::StsGetCallerIdentity, who, |c, w| {
            Ok(CallerIdentity {
                account: c.account().clone(),
                arn: c.arn(w),
            })
        })
    }

    fn assume_role(
        &self,
        who: &Credentials,
        role: &RoleArn,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials> {
        self.call(Action::StsAssumeRole, who, |c, w| {
            let valid = (2..=64).contains(&session_name.len())
                && session_name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_+=,.@-".contains(ch));
            if !valid {
                return Err(CloudError::invalid(c.action, "ValidationError", format!("RoleSessionName '{session_name}' must be 2 to 64 of [\\w+=,.@-]")));
            }
            let name = role.name().to_owned();
            let trust = w
                .accounts
                .get(role.account())
                .and_then(|a| a.roles.get(&name))
                .filter(|_| role_arn(w, role.account(), &name) == role.as_str())
                .map(|r| r.trust.clone())
                .ok_or_else(|| {
                    CloudError::denied(c.action, format!("User: {} is not authorized to perform: sts:AssumeRole on resource: {role} (no such role)", c.arn(w)))
                })?;
            let context: Vec<(&str, String)> = external_id.map(|e| ("sts:ExternalId", e.to_owned())).into_iter().collect();
            c.check(
                w,
                Action::StsAssumeRole,
                role.as_str(),
                &context,
                Some(Guard {
                    document: &trust,
                    owner: role.account(),
                    kind: ResourcePolicyKind::TrustPolicy,
                }),
            )?;
            Ok(crate::admin::issue(
                w,
                Identity::Role {
                    account: role.account().clone(),
                    name,
                    session: session_name.to_owned(),
                },
            ))
        })
    }
}
