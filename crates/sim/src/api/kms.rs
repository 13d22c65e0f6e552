//! KMS: keys, key policies, grants and data keys.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Kms for Sim {
    fn describe_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<KeyInfo> {
        self.call(Action::KmsDescribeKey, who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, Action::KmsDescribeKey, false)?;
            Ok(KeyInfo {
                arn: key_arn(&owner, region, &k.id),
                account: owner,
                manager: if k.aws_managed {
                    KeyManager::Aws
                } else {
                    KeyManager::Customer
                },
                state: k.state,
                spec: k.spec,
            })
        })
    }

    fn get_key_policy(&self, who: &Credentials, region: &Region, key: &str) -> Result<String> {
        self.call(Action::KmsGetKeyPolicy, who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, Action::KmsGetKeyPolicy, false)?;
            Ok(k.policy)
        })
    }

    fn list_grants(&self, who: &Credentials, region: &Region, key: &str) -> Result<Vec<Grant>> {
        self.call(Action::KmsListGrants, who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, Action::KmsListGrants, false)?;
            Ok(k.grants
                .iter()
                .map(|g| Grant {
                    id: g.id.clone(),
                    grantee: g.grantee.clone(),
                    operations: g.operations.clone(),
                })
                .collect())
        })
    }

    fn generate_data_key(&self, who: &Credentials, region: &Region, key: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        self.call(Action::KmsGenerateDataKey, who, |c, w| {
            let (owner, k) = kms_key(w, c, region, key)?;
            c.check_key(w, &owner, region, &k, Action::KmsGenerateDataKey, false)?;
            usable(c, &k)?;
            let plaintext = crate::admin::random_bytes::<32>().to_vec();
            let arn = key_arn(&owner, region, &k.id);
            let sealed = seal(c.action, &k.material, &arn, &plaintext)?;
            let mut ciphertext = arn.into_bytes();
            ciphertext.push(b'\n');
            ciphertext.extend(sealed);
            Ok((plaintext, ciphertext))
        })
    }

    fn decrypt(&self, who: &Credentials, region: &Region, ciphertext: &[u8]) -> Result<Vec<u8>> {
        self.call(Action::KmsDecrypt, who, |c, w| {
            let invalid = || {
                CloudError::invalid(
                    c.action,
                    "InvalidCiphertextException",
                    "the ciphertext is not one KMS made",
                )
            };
            let split = ciphertext.iter().position(|&b| b == b'\n').ok_or_else(invalid)?;
            let arn = std::str::from_utf8(&ciphertext[..split]).map_err(|_| invalid())?;
            let (owner, r, id) = key_parts(arn).ok_or_else(invalid)?;
            if &r != region {
                return Err(invalid());
            }
            let k = crate::rules::key(w, &owner, region, &id)
                .cloned()
                .ok_or_else(invalid)?;
            c.check_key(w, &owner, region, &k, Action::KmsDecrypt, false)?;
            usable(c, &k)?;
            open(&k.material, arn, &ciphertext[split + 1..]).ok_or_else(invalid)
        })
    }
}
