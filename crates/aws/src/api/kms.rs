//! KMS through the SDK.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Kms for AwsCloud {
    fn describe_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<KeyInfo> {
        let a = Action::KmsDescribeKey;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .describe_key()
                .key_id(key)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let m = out.key_metadata().ok_or_else(|| missing(a, "KeyMetadata"))?;
            Ok(KeyInfo {
                arn: m.arn().ok_or_else(|| missing(a, "Arn"))?.to_owned(),
                account: parse(a, "AWSAccountId", m.aws_account_id())?,
                manager: match m.key_manager().map(|k| k.as_str()) {
                    Some("AWS") => KeyManager::Aws,
                    _ => KeyManager::Customer,
                },
                state: m.key_state().map_or("Enabled", |s| s.as_str()).to_owned(),
                spec: m
                    .key_spec()
                    .map_or("SYMMETRIC_DEFAULT", |s| s.as_str())
                    .to_owned(),
            })
        })
    }

    fn get_key_policy(&self, who: &Credentials, region: &Region, key: &str) -> Result<String> {
        let a = Action::KmsGetKeyPolicy;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .get_key_policy()
                .key_id(key)
                .policy_name("default")
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out.policy().ok_or_else(|| missing(a, "Policy"))?.to_owned())
        })
    }

    fn list_grants(&self, who: &Credentials, region: &Region, key: &str) -> Result<Vec<Grant>> {
        let a = Action::KmsListGrants;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .list_grants()
                .key_id(key)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .grants()
                .iter()
                .map(|g| Grant {
                    id: g.grant_id().unwrap_or("").to_owned(),
                    grantee: g.grantee_principal().unwrap_or("").to_owned(),
                    operations: g.operations().iter().map(|o| o.as_str().to_owned()).collect(),
                })
                .collect())
        })
    }

    fn generate_data_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let a = Action::KmsGenerateDataKey;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .generate_data_key()
                .key_id(key)
                .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            let plain = out
                .plaintext()
                .ok_or_else(|| missing(a, "Plaintext"))?
                .as_ref()
                .to_vec();
            let sealed = out
                .ciphertext_blob()
                .ok_or_else(|| missing(a, "CiphertextBlob"))?
                .as_ref()
                .to_vec();
            Ok((plain, sealed))
        })
    }

    fn decrypt(&self, who: &Credentials, region: &Region, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let a = Action::KmsDecrypt;
        let c = self.clients(who, Some(region));
        self.run(async {
            let out = c
                .kms
                .decrypt()
                .ciphertext_blob(Blob::new(ciphertext.to_vec()))
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .plaintext()
                .ok_or_else(|| missing(a, "Plaintext"))?
                .as_ref()
                .to_vec())
        })
    }
}
