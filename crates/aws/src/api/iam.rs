//! IAM through the SDK (global: us-east-1).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Iam for AwsCloud {
    fn get_role(&self, who: &Credentials, role: &RoleArn) -> Result<RoleInfo> {
        let a = Action::IamGetRole;
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .iam
                .get_role()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let r = out.role().ok_or_else(|| missing(a, "Role"))?;
            let trust = url_decode(r.assume_role_policy_document().unwrap_or("{}"));
            let names = c
                .iam
                .list_role_policies()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(Action::IamListRolePolicies, e))?;
            let mut inline_policies = Vec::new();
            for name in names.policy_names() {
                let p = c
                    .iam
                    .get_role_policy()
                    .role_name(role.name())
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| map(Action::IamGetRolePolicy, e))?;
                inline_policies.push((name.clone(), url_decode(p.policy_document())));
            }
            Ok(RoleInfo {
                arn: r.arn().to_owned(),
                trust_policy: trust,
                inline_policies,
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
        let a = Action::IamCreateRole;
        let c = self.clients(who, None);
        self.run(async {
            let tags = tags
                .iter()
                .filter_map(|t| {
                    aws_sdk_iam::types::Tag::builder()
                        .key(&t.key)
                        .value(&t.value)
                        .build()
                        .ok()
                })
                .collect();
            let out = c
                .iam
                .create_role()
                .path(path)
                .role_name(name)
                .assume_role_policy_document(trust_policy)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let arn = out.role().map(|r| r.arn().to_owned());
            parse(a, "role ARN", arn.as_deref())
        })
    }

    fn delete_role(&self, who: &Credentials, role: &RoleArn) -> Result<()> {
        let a = Action::IamDeleteRole;
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .delete_role()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn put_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str, document: &str) -> Result<()> {
        let a = Action::IamPutRolePolicy;
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .put_role_policy()
                .role_name(role.name())
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn delete_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str) -> Result<()> {
        let a = Action::IamDeleteRolePolicy;
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .delete_role_policy()
                .role_name(role.name())
                .policy_name(name)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn create_instance_profile(&self, who: &Credentials, path: &str, name: &str) -> Result<String> {
        let a = Action::IamCreateInstanceProfile;
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .iam
                .create_instance_profile()
                .path(path)
                .instance_profile_name(name)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            out.instance_profile()
                .map(|p| p.arn().to_owned())
                .ok_or_else(|| missing(a, "InstanceProfile"))
        })
    }

    fn delete_instance_profile(&self, who: &Credentials, profile: &str) -> Result<()> {
        let a = Action::IamDeleteInstanceProfile;
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .delete_instance_profile()
                .instance_profile_name(profile_name(profile))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn add_role_to_instance_profile(&self, who: &Credentials, profile: &str, role: &RoleArn) -> Result<()> {
        let a = Action::IamAddRoleToInstanceProfile;
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .add_role_to_instance_profile()
                .instance_profile_name(profile_name(profile))
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn remove_role_from_instance_profile(
        &self,
        who: &Credentials,
        profile: &str,
        role: &RoleArn,
    ) -> Result<()> {
        let a = Action::IamRemoveRoleFromInstanceProfile;
        let c = self.clients(who, None);
        self.run(async {
            c.iam
                .remove_role_from_instance_profile()
                .instance_profile_name(profile_name(profile))
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn simulate(&self, who: &Credentials, role: &RoleArn, checks: &[(Action, String)]) -> Result<Vec<bool>> {
        let a = Action::IamSimulatePrincipalPolicy;
        let c = self.clients(who, None);
        self.run(async {
            let mut out = Vec::with_capacity(checks.len());
            // One request per check: the simulator answers the cross product of the actions
            // and resources it is given, and each check has its own resource.
            for (action, resource) in checks {
                let answer = c
                    .iam
                    .simulate_principal_policy()
                    .policy_source_arn(role.as_str())
                    .action_names(action.as_str())
                    .resource_arns(resource)
                    .send()
                    .await
                    .map_err(|e| {
                        // An endpoint without the simulator (moto) fails the call with a web
                        // page; AWS's own errors, a transient failure included, are XML.
                        let page = e.raw_response().is_some_and(|r| {
                            r.status().is_server_error()
                                && r.headers().get("content-type").is_some_and(|t| t.starts_with("text/html"))
                        });
                        if page {
                            CloudError::aws(
                                a,
                                "NotImplemented",
                                "the endpoint has no policy simulator: it answered with a web page, not an AWS error",
                            )
                        } else {
                            map(a, e)
                        }
                    })?;
                let allowed = answer
                    .evaluation_results()
                    .iter()
                    .all(|r| r.eval_decision() == &aws_sdk_iam::types::PolicyEvaluationDecisionType::Allowed);
                out.push(allowed && !answer.evaluation_results().is_empty());
            }
            Ok(out)
        })
    }

    fn list_instance_profiles_for_role(&self, who: &Credentials, role: &RoleArn) -> Result<Vec<String>> {
        let a = Action::IamListInstanceProfilesForRole;
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .iam
                .list_instance_profiles_for_role()
                .role_name(role.name())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .instance_profiles()
                .iter()
                .map(|p| p.arn().to_owned())
                .collect())
        })
    }
}
