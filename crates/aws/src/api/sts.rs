//! STS through the SDK.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Sts for AwsCloud {
    fn caller_identity(&self, who: &Credentials) -> Result<CallerIdentity> {
        let a = Action::StsGetCallerIdentity;
        let c = self.clients(who, None);
        self.run(async {
            let out = c.sts.get_caller_identity().send().await.map_err(|e| map(a, e))?;
            Ok(CallerIdentity {
                account: parse(a, "account", out.account())?,
                arn: out.arn().ok_or_else(|| missing(a, "arn"))?.to_owned(),
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
        let a = Action::StsAssumeRole;
        let c = self.clients(who, None);
        self.run(async {
            let out = c
                .sts
                .assume_role()
                .role_arn(role.as_str())
                .role_session_name(session_name)
                .set_external_id(external_id.map(str::to_owned))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let creds = out.credentials().ok_or_else(|| missing(a, "credentials"))?;
            Ok(Credentials {
                access_key_id: creds.access_key_id().to_owned(),
                secret_access_key: creds.secret_access_key().to_owned(),
                session_token: Some(creds.session_token().to_owned()),
            })
        })
    }
}
