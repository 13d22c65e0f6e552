//! Conditional writes and S3 Object Lock: PUTs that never replace an object, retained PUTs,
//! extending and reading a retention, and deleting an object's version for good.
//!
//! S3 keeps versions in a bucket with Object Lock (it needs versioning): a plain DELETE adds a
//! delete marker that hides the object and leaves its data. The backend deletes the version
//! instead, after a HEAD that says which version is current and whether it is retained, so that
//! it never tries to delete a retained object (S3 would refuse it anyway).

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::{ByteStream, DateTime as S3Time};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use bulwark_storage::{BackendError, LockMode, Retention};
use chrono::{DateTime, Utc};

use crate::errors::{self, Op};
use crate::S3Backend;

/// The retention an object's HEAD reports (given `s3:GetObjectRetention`; without it, S3 omits
/// the headers and the object looks unretained).
pub(crate) fn of(head: &HeadObjectOutput) -> Option<Retention> {
    let until = head.object_lock_retain_until_date()?;
    let mode = match head.object_lock_mode()? {
        ObjectLockMode::Compliance => LockMode::Compliance,
        // Governance, and any mode S3 adds later: the weaker guarantee.
        _ => LockMode::Governance,
    };
    Some(Retention {
        mode,
        until: DateTime::<Utc>::from_timestamp(until.secs(), 0)?,
    })
}

fn s3_time(t: DateTime<Utc>) -> S3Time {
    S3Time::from_secs(t.timestamp())
}

impl S3Backend {
    /// HEADs `key`; `op` names the operation in errors.
    pub(crate) async fn head(&self, key: &str, op: Op) -> Result<HeadObjectOutput, BackendError> {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| errors::map(e, op, &self.target(key)))
    }

    /// PUTs a new object, refusing an existing one: with `If-None-Match: *`, or where the store
    /// ignores that, with a HEAD first.
    pub(crate) async fn put_object(
        &self,
        key: &str,
        data: &[u8],
        retention: Option<Retention>,
    ) -> Result<(), BackendError> {
        let target = self.target(key);
        let conditional = self.conditional_writes.load(std::sync::atomic::Ordering::Relaxed);
        if !conditional {
            match self.head(key, Op::Put).await {
                Ok(_) => return Err(BackendError::AlreadyExists(target.path())),
                Err(BackendError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()));
        if conditional {
            put = put.if_none_match("*");
        }
        if let Some(r) = retention {
            // S3 wants a checksum with Object Lock parameters: the SDK sends a CRC32 itself.
            let mode = match r.mode {
                LockMode::Governance => ObjectLockMode::Governance,
                LockMode::Compliance => ObjectLockMode::Compliance,
            };
            put = put
                .object_lock_mode(mode)
                .object_lock_retain_until_date(s3_time(r.until));
        }
        put.send().await.map_err(|e| errors::map(e, Op::Put, &target))?;
        Ok(())
    }

    /// Extends the retention of `key`, refusing to shorten or weaken it (S3 refuses it too in
    /// compliance mode, and in governance mode without the bypass permission, which this
    /// program never asks for).
    pub(crate) async fn extend_retention(&self, key: &str, retention: Retention) -> Result<(), BackendError> {
        let head = self.head(key, Op::GetRetention).await?;
        if let Some(current) = of(&head).filter(|c| !retention.extends(c)) {
            return Err(BackendError::ShorterRetention {
                path: self.target(key).path(),
                current,
            });
        }
        let mode = match retention.mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        let mut put = self
            .client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(s3_time(retention.until))
                    .build(),
            );
        if let Some(version) = head.version_id() {
            put = put.version_id(version);
        }
        put.send()
            .await
            .map_err(|e| errors::map(e, Op::PutRetention, &self.target(key)))?;
        Ok(())
    }

    /// Deletes the current version of `key` for good, unless it is retained.
    pub(crate) async fn delete_version(&self, key: &str) -> Result<(), BackendError> {
        let head = match self.head(key, Op::DeleteVersion).await {
            Ok(head) => head,
            Err(BackendError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(r) = of(&head).filter(|r| r.holds_at(Utc::now())) {
            return Err(BackendError::Locked {
                path: self.target(key).path(),
                until: r.until,
            });
        }
        let mut delete = self.client.delete_object().bucket(&self.bucket).key(key);
        if let Some(version) = head.version_id() {
            delete = delete.version_id(version);
        }
        delete
            .send()
            .await
            .map_err(|e| errors::map(e, Op::DeleteVersion, &self.target(key)))?;
        Ok(())
    }

    /// Whether the bucket has Object Lock enabled. Asked once: S3's answer is kept, a refusal
    /// (no `s3:GetBucketObjectLockConfiguration`) counting as no; a failure to get an answer (the
    /// network, a timeout) counts as no and is asked again next time.
    pub(crate) fn bucket_has_object_lock(&self) -> bool {
        let mut known = self
            .object_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(enabled) = *known {
            return enabled;
        }
        let answer = self.runtime.block_on(async {
            match self
                .client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send()
                .await
            {
                Ok(out) => Some(
                    out.object_lock_configuration()
                        .and_then(|c| c.object_lock_enabled())
                        == Some(&ObjectLockEnabled::Enabled),
                ),
                // S3 answered: no configuration, or no permission to read it.
                Err(aws_sdk_s3::error::SdkError::ServiceError(_)) => Some(false),
                Err(_) => None,
            }
        });
        *known = answer;
        answer.unwrap_or(false)
    }
}
