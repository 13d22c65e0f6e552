//! S3: buckets as repository object stores, authorized per request.

#[allow(clippy::wildcard_imports)]
use super::*;

impl ObjectStore for Sim {
    fn object_store(
        &self,
        who: &SharedCredentials,
        region: &Region,
        bucket: &str,
        prefix: &str,
    ) -> Result<Box<dyn Backend>> {
        let _ = region;
        {
            let w = self
                .inner
                .read()
                .map_err(|e| crate::SimError::unavailable(Action::S3ListBucket, e))?;
            Inner::identity(&w, Action::S3ListBucket, &who.get())?;
            if !w.buckets.contains_key(bucket) {
                return Err(CloudError::not_found(
                    Action::S3ListBucket,
                    "NoSuchBucket",
                    format!("The specified bucket {bucket} does not exist"),
                ));
            }
        }
        Ok(Box::new(crate::objects::ObjectStore::new(
            self.clone(),
            who.clone(),
            bucket,
            prefix,
        )))
    }
}
