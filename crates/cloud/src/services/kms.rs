use bulwark_model::Region;

use crate::{Credentials, Grant, KeyInfo, Result};

/// KMS: keys, their policies and grants, and the data keys the embedded cloud's S3 uses.
pub trait Kms: Send + Sync {
    /// `kms:DescribeKey` of a key id, key ARN, alias name or alias ARN.
    fn describe_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<KeyInfo>;
    /// `kms:GetKeyPolicy` (policy name `default`).
    fn get_key_policy(&self, who: &Credentials, region: &Region, key: &str) -> Result<String>;
    /// `kms:ListGrants`.
    fn list_grants(&self, who: &Credentials, region: &Region, key: &str) -> Result<Vec<Grant>>;
    /// `kms:GenerateDataKey` (AES-256): the plaintext and its encrypted form.
    fn generate_data_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<(Vec<u8>, Vec<u8>)>;
    /// `kms:Decrypt` of what `generate_data_key` returned.
    fn decrypt(&self, who: &Credentials, region: &Region, ciphertext: &[u8]) -> Result<Vec<u8>>;
}
