use bulwark_model::RoleArn;

use crate::{CallerIdentity, Credentials, Result};

/// STS: who a caller is, and sessions of roles.
pub trait Sts: Send + Sync {
    /// `sts:GetCallerIdentity`.
    fn caller_identity(&self, who: &Credentials) -> Result<CallerIdentity>;
    /// `sts:AssumeRole`, with `sts:ExternalId` when the role's trust requires it.
    fn assume_role(
        &self,
        who: &Credentials,
        role: &RoleArn,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials>;
}
