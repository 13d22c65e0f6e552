//! S3 in the embedded cloud: a bucket is a directory of the data directory, and every request
//! is authorized against the caller's IAM policies (`s3:PutObject`, `s3:GetObject`,
//! `s3:ListBucket`, `s3:DeleteObject` on the object or bucket ARN), as S3 does for a bucket
//! without a bucket policy.

use bulwark_storage::{Backend, BackendError, FileKind, LocalBackend};

use bulwark_cloud::SharedCredentials;
use bulwark_model::Action;

use crate::auth::Caller;
use crate::{Inner, Sim};

/// A repository prefix of a bucket, seen with one caller's credentials.
pub(crate) struct ObjectStore {
    sim: Sim,
    /// Resolved at each request, as S3 does: they may be replaced, or expire.
    who: SharedCredentials,
    bucket: String,
    prefix: String,
    local: LocalBackend,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

impl ObjectStore {
    pub fn new(sim: Sim, who: SharedCredentials, bucket: &str, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/').to_owned();
        let mut root = sim.inner.dir.join("s3").join(bucket);
        if !prefix.is_empty() {
            root = root.join(&prefix);
        }
        Self {
            local: LocalBackend::new(root),
            sim,
            who,
            bucket: bucket.to_owned(),
            prefix,
        }
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        let path = kind.path(name);
        if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    /// Authorizes `action` on `resource`, as S3 would before serving the request.
    fn authorize(
        &self,
        operation: &'static str,
        action: Action,
        resource: String,
        path: String,
    ) -> Result<(), BackendError> {
        let world = self.sim.inner.read().map_err(|e| BackendError::Remote {
            operation,
            path: path.clone(),
            message: e.to_string(),
            retryable: true,
        })?;
        Inner::identity(&world, action, &self.who.get())
            .and_then(|identity| {
                let caller = Caller {
                    identity,
                    action: action.to_owned(),
                };
                caller.check(&world, action, &resource, &[], None)
            })
            .map_err(|e| BackendError::Remote {
                operation,
                path,
                message: format!("{}: {}", e.code, e.message),
                retryable: false,
            })
    }

    fn object(
        &self,
        operation: &'static str,
        action: Action,
        kind: FileKind,
        name: &str,
    ) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        self.authorize(
            operation,
            action,
            format!("arn:aws:s3:::{}/{key}", self.bucket),
            key,
        )
    }
}

impl Backend for ObjectStore {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.object("PUT", Action::S3PutObject, kind, name)?;
        self.local.put(kind, name, data)
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.object("GET", Action::S3GetObject, kind, name)?;
        self.local.get(kind, name)
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.object("GET", Action::S3GetObject, kind, name)?;
        self.local.get_range(kind, name, offset, length)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        let bucket = format!("arn:aws:s3:::{}", self.bucket);
        self.authorize("LIST", Action::S3ListBucket, bucket, self.key(kind, ""))?;
        self.local.list(kind)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.object("DELETE", Action::S3DeleteObject, kind, name)?;
        self.local.delete(kind, name)
    }
}
