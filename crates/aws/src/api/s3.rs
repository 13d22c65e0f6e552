//! S3 through `bulwark-s3`, with credentials renewable while the repository is open.

#[allow(clippy::wildcard_imports)]
use super::*;

impl ObjectStore for AwsCloud {
    fn object_store(
        &self,
        who: &SharedCredentials,
        region: &Region,
        bucket: &str,
        prefix: &str,
    ) -> Result<Box<dyn Backend>> {
        let a = Action::S3ListBucket;
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let options = bulwark_s3::S3Options {
            endpoint_url: self.options.endpoint_url.clone(),
            region: Some(region.to_string()),
            credentials: Some(std::sync::Arc::new(Renewable(who.clone()))),
        };
        let backend = bulwark_s3::S3Backend::open(&url, &options, self.runtime.clone())
            .map_err(|e| CloudError::invalid(a, "InvalidRepository", e.to_string()))?;
        Ok(Box::new(backend))
    }
}
