use bulwark_model::{Action, RoleArn};

use crate::{Credentials, Result, RoleInfo, Tag};

/// IAM: roles, their inline policies, and instance profiles. A global service: no region.
pub trait Iam: Send + Sync {
    /// `iam:GetRole`, with its inline policies (`iam:GetRolePolicy`).
    fn get_role(&self, who: &Credentials, role: &RoleArn) -> Result<RoleInfo>;
    /// `iam:CreateRole` in the caller's account.
    fn create_role(
        &self,
        who: &Credentials,
        path: &str,
        name: &str,
        trust_policy: &str,
        tags: &[Tag],
    ) -> Result<RoleArn>;
    /// `iam:DeleteRole`.
    fn delete_role(&self, who: &Credentials, role: &RoleArn) -> Result<()>;
    /// `iam:PutRolePolicy`.
    fn put_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str, document: &str) -> Result<()>;
    /// `iam:DeleteRolePolicy`.
    fn delete_role_policy(&self, who: &Credentials, role: &RoleArn, name: &str) -> Result<()>;
    /// `iam:CreateInstanceProfile` in the caller's account; returns its ARN.
    fn create_instance_profile(&self, who: &Credentials, path: &str, name: &str) -> Result<String>;
    /// `iam:DeleteInstanceProfile`, by ARN.
    fn delete_instance_profile(&self, who: &Credentials, profile: &str) -> Result<()>;
    /// `iam:AddRoleToInstanceProfile`.
    fn add_role_to_instance_profile(&self, who: &Credentials, profile: &str, role: &RoleArn) -> Result<()>;
    /// `iam:RemoveRoleFromInstanceProfile`.
    fn remove_role_from_instance_profile(
        &self,
        who: &Credentials,
        profile: &str,
        role: &RoleArn,
    ) -> Result<()>;
    /// `iam:SimulatePrincipalPolicy`: whether `role`'s IAM policies allow each action on each
    /// resource ARN, in order. Like AWS's, it evaluates identity policies only: not KMS key
    /// policies, not SCPs.
    fn simulate(&self, who: &Credentials, role: &RoleArn, checks: &[(Action, String)]) -> Result<Vec<bool>>;
    /// `iam:ListInstanceProfilesForRole`: the ARNs of the profiles holding the role.
    fn list_instance_profiles_for_role(&self, who: &Credentials, role: &RoleArn) -> Result<Vec<String>>;
}
