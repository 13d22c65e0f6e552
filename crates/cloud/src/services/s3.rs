use bulwark_model::Region;
use bulwark_storage::Backend;

use crate::{Result, SharedCredentials};

/// S3, as the repository's store of objects.
pub trait ObjectStore: Send + Sync {
    /// The repository's objects under `s3://bucket/prefix`, accessed with `who`'s credentials
    /// (`s3:ListBucket`, `s3:GetObject`, `s3:PutObject`, `s3:DeleteObject`), as they are at
    /// each request: replacing them renews the access of an open repository.
    fn object_store(
        &self,
        who: &SharedCredentials,
        region: &Region,
        bucket: &str,
        prefix: &str,
    ) -> Result<Box<dyn Backend>>;
}
