//! The identities a session acts as: the appliance's own, and sessions of the roles it assumes,
//! cached per role and renewed before they expire.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulwark_cloud::{Cloud, CloudError, Credentials};
use bulwark_model::{Estate, RoleArn};

/// How long assumed credentials are used before they are assumed again: AssumeRole's
/// sessions last one hour by default (and at most the role's maximum session duration), so a
/// long session renews them well before they expire.
pub(crate) const ROLE_SESSION_REUSE: Duration = Duration::from_secs(45 * 60);

/// Credentials of the roles the appliance assumes, cached per role.
pub(crate) struct Identities {
    cloud: Cloud,
    estate: Estate,
    appliance: Credentials,
    /// AssumeRole is retried like any call: its answer too can be throttled or lost.
    pub(crate) retry: crate::retry::Retry,
    cache: Mutex<BTreeMap<RoleArn, (Credentials, Instant)>>,
}

impl Identities {
    pub fn new(cloud: Cloud, estate: Estate, appliance: Credentials) -> Self {
        Self {
            cloud,
            estate,
            appliance,
            retry: crate::retry::Retry::CONTROL,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The appliance's own credentials.
    pub fn appliance(&self) -> &Credentials {
        &self.appliance
    }

    /// Credentials of a session of `role`, assumed with the account's external id, renewed
    /// when they near their expiry.
    pub fn role(&self, role: &RoleArn) -> Result<Credentials, CloudError> {
        let mut cache = crate::lock(&self.cache);
        if let Some((c, at)) = cache.get(role) {
            if at.elapsed() < ROLE_SESSION_REUSE {
                return Ok(c.clone());
            }
        }
        let external = self
            .estate
            .account(role.account())
            .and_then(|a| a.external_id.as_deref());
        let sts = &self.cloud.sts;
        let creds = self
            .retry
            .run(bulwark_model::Action::StsAssumeRole, None, || {
                sts.assume_role(&self.appliance, role, "bulwark", external)
            })
            .map_err(crate::retry::Gave::error)?;
        cache.insert(role.clone(), (creds.clone(), Instant::now()));
        Ok(creds)
    }

    /// A new session of `role`, whatever is cached: for credentials handed to a worker or a
    /// long transfer, which must last as long as a session can.
    pub fn fresh(&self, role: &RoleArn) -> Result<Credentials, CloudError> {
        crate::lock(&self.cache).remove(role);
        self.role(role)
    }
}
