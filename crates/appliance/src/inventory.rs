//! The estate as the appliance knows it: the imported accounts, roles, keys and repository,
//! with the instances and EBS defaults discovery found. The planner takes its facts from here.

use bulwark_engine::discover::Discovered;
use bulwark_model::Estate;

use crate::{Appliance, ApplianceError};

impl Appliance {
    /// The estate with what discovery found: its instances replace any typed in the estate
    /// file, and the default EBS keys and encryption defaults it read complete the file's.
    pub async fn discovered_estate(&self) -> Result<(Estate, Vec<Discovered>), ApplianceError> {
        let found = self.db.instances().await?;
        let mut estate = self.estate.clone();
        estate.instances = found.iter().map(|d| d.instance.clone()).collect();
        for status in self.db.regions().await? {
            let at = (status.account.clone(), status.region.clone());
            if let Some(key) = status.default_key {
                estate.default_keys.entry(at.clone()).or_insert(key);
            }
            if status.encryption_by_default {
                estate.encryption_by_default.insert(at);
            }
        }
        Ok((estate, found))
    }
}
