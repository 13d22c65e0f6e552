//! Turning the SDK's errors into [`BackendError`]s that say what is wrong and whether a retry
//! can help.

use std::io;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use bulwark_storage::BackendError;

use crate::{CONNECT_TIMEOUT, OPERATION_TIMEOUT, PER_ATTEMPT_TIMEOUT};

/// A backend operation, for messages: its name and the IAM action it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Get,
    List,
    Delete,
    /// Deleting one version of an object (in a bucket with Object Lock, which keeps versions).
    DeleteVersion,
    /// Reading an object's retention (HEAD with s3:GetObjectRetention).
    GetRetention,
    /// Extending an object's retention.
    PutRetention,
}

impl Op {
    /// The name `BackendError::Remote` carries.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::List => "LIST",
            Op::Delete | Op::DeleteVersion => "DELETE",
            Op::GetRetention => "HEAD",
            Op::PutRetention => "PUT retention",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Op::Put => "s3:PutObject",
            Op::Get => "s3:GetObject",
            Op::List => "s3:ListBucket",
            Op::Delete => "s3:DeleteObject",
            Op::DeleteVersion => "s3:DeleteObjectVersion",
            Op::GetRetention => "s3:GetObjectRetention",
            Op::PutRetention => "s3:PutObjectRetention",
        }
    }
}

/// Where an operation acted, for messages.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) bucket: &'a str,
    /// The object key, or for a listing the key prefix.
    pub(crate) key: &'a str,
    pub(crate) region: &'a str,
    pub(crate) endpoint: Option<&'a str>,
}

impl Target<'_> {
    /// `s3://bucket/key`, the path errors carry.
    pub(crate) fn path(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn arn(&self, op: Op) -> String {
        match op {
            Op::List => format!("arn:aws:s3:::{}", self.bucket),
            _ => format!("arn:aws:s3:::{}/{}", self.bucket, self.key),
        }
    }

    fn place(&self) -> String {
        match self.endpoint {
            Some(endpoint) => format!("region {} at {endpoint}", self.region),
            None => format!("region {}", self.region),
        }
    }
}

/// What an error response means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The object does not exist.
    NotFound,
    /// A conditional write found the object there already (412).
    Exists,
    /// A range starts past the end of the object.
    InvalidRange,
    /// The bucket does not exist (or not where we look).
    NoSuchBucket,
    /// The bucket is in another region than the client's.
    WrongRegion,
    /// The credentials may not do this.
    AccessDenied,
    /// The credentials are not valid.
    BadCredentials,
    /// The credentials expired: fresh ones (the SDK refreshes them) may work.
    ExpiredCredentials,
    /// Throttling, a server error, a request timeout: trying again can help.
    Transient,
    /// Anything else: a request S3 refuses, which a retry will not change.
    Refused,
}

/// Classifies an S3 error response by its code and HTTP status.
pub(crate) fn classify(code: Option<&str>, status: Option<u16>) -> Class {
    match code {
        Some("NoSuchKey" | "NotFound") => Class::NotFound,
        Some("PreconditionFailed") => Class::Exists,
        Some("InvalidRange") => Class::InvalidRange,
        Some("NoSuchBucket") => Class::NoSuchBucket,
        Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
            Class::WrongRegion
        }
        Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem" | "InvalidObjectState") => {
            Class::AccessDenied
        }
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "InvalidSecurity") => {
            Class::BadCredentials
        }
        Some("ExpiredToken" | "TokenRefreshRequired" | "RequestExpired") => Class::ExpiredCredentials,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "OperationAborted"
            | "ConditionalRequestConflict",
        ) => Class::Transient,
        _ => match status {
            Some(404) if code.is_none() => Class::NotFound,
            Some(404) => Class::Refused,
            Some(416) => Class::InvalidRange,
            Some(412) => Class::Exists,
            Some(301 | 307) => Class::WrongRegion,
            Some(403) if code.is_none() => Class::AccessDenied,
            Some(408 | 429 | 500..=599) => Class::Transient,
            _ => Class::Refused,
        },
    }
}

/// The error of a range that goes past the end of an object: the same error the other backends
/// give for a file shorter than expected.
pub(crate) fn short_object(path: String, detail: String) -> BackendError {
    BackendError::Io {
        path,
        error: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file is shorter than expected: {detail}"),
        ),
    }
}

fn remote(op: Op, target: &Target<'_>, message: String, retryable: bool) -> BackendError {
    BackendError::Remote {
        operation: op.name(),
        path: target.path(),
        message,
        retryable,
    }
}

/// An operation that did not finish within `OPERATION_TIMEOUT` (SDK timeouts included).
pub(crate) fn timed_out(op: Op, target: &Target<'_>) -> BackendError {
    remote(
        op,
        target,
        format!(
            "no complete answer within {} s (connect timeout {} s, {} s per attempt)",
            OPERATION_TIMEOUT.as_secs(),
            CONNECT_TIMEOUT.as_secs(),
            PER_ATTEMPT_TIMEOUT.as_secs()
        ),
        true,
    )
}

/// Reading a response body failed after the response began: the connection dropped or stalled.
pub(crate) fn body_failed(op: Op, target: &Target<'_>, error: &dyn std::error::Error) -> BackendError {
    remote(
        op,
        target,
        format!("reading the response failed: {}", causes(error)),
        true,
    )
}

/// An error and its sources, each once: the SDK's errors nest their causes, and its own
/// `DisplayErrorContext` adds a debug dump of them.
fn causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// The failure to get credentials behind an error, if that is what it is.
fn credentials_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a CredentialsError> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}

/// Maps an SDK error of operation `op` on `target`.
pub(crate) fn map<E>(err: SdkError<E>, op: Op, target: &Target<'_>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = causes(&err);
    match &err {
        SdkError::TimeoutError(_) => timed_out(op, target),
        SdkError::DispatchFailure(_) if credentials_error(&err).is_some() => {
            // No credentials anywhere in the chain, or a broken configuration, is final; a
            // source that failed (a metadata service that did not answer) may work next time.
            let retryable = !matches!(
                credentials_error(&err),
                Some(CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_))
            );
            remote(
                op,
                target,
                format!("no usable AWS credentials: {detail}"),
                retryable,
            )
        }
        SdkError::DispatchFailure(failure) => {
            // A user error is a configuration the SDK cannot send (a malformed endpoint): a
            // retry does the same. Everything else (refused, reset, DNS, TLS, connect timeout)
            // may pass the next time.
            let user = failure.as_connector_error().is_some_and(|e| e.is_user());
            let what = if failure.as_connector_error().is_some_and(|e| e.is_timeout()) {
                "timed out connecting to"
            } else {
                "cannot reach"
            };
            let place = target.place();
            remote(op, target, format!("{what} S3 ({place}): {detail}"), !user)
        }
        SdkError::ResponseError(_) => remote(
            op,
            target,
            format!("the response could not be read: {detail}"),
            true,
        ),
        SdkError::ConstructionFailure(_) => {
            // A request the SDK refuses to build (an invalid key, say): the same every time.
            remote(
                op,
                target,
                format!("the request could not be made: {detail}"),
                false,
            )
        }
        SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code();
            let said = match (code, err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                (None, _) => format!("HTTP {}", status.unwrap_or(0)),
            };
            let bucket = target.bucket;
            match classify(code, status) {
                Class::NotFound => BackendError::NotFound(target.path()),
                Class::Exists => BackendError::AlreadyExists(target.path()),
                Class::InvalidRange => short_object(target.path(), said),
                Class::NoSuchBucket => remote(
                    op,
                    target,
                    format!(
                        "bucket {bucket} does not exist or is not in {} ({said})",
                        target.place()
                    ),
                    false,
                ),
                Class::WrongRegion => remote(
                    op,
                    target,
                    format!(
                        "bucket {bucket} is not in {}: use the bucket's region ({said})",
                        target.place()
                    ),
                    false,
                ),
                Class::AccessDenied => {
                    let hint = if op == Op::Get {
                        "; without s3:ListBucket on the bucket, S3 also answers so for a missing object"
                    } else {
                        ""
                    };
                    remote(
                        op,
                        target,
                        format!(
                            "access denied: the credentials in use may not {} on {} (check the \
                             identity policy, the bucket policy and, for an encrypted bucket, the \
                             KMS key policy{hint}) ({said})",
                            op.action(),
                            target.arn(op)
                        ),
                        false,
                    )
                }
                Class::BadCredentials => remote(
                    op,
                    target,
                    format!(
                        "the credentials in use are not valid for {} ({said})",
                        target.place()
                    ),
                    false,
                ),
                Class::ExpiredCredentials => remote(
                    op,
                    target,
                    format!("the credentials in use have expired ({said})"),
                    true,
                ),
                Class::Transient => remote(op, target, format!("{said} (still failing after retries)"), true),
                Class::Refused => remote(op, target, said, false),
            }
        }
        _ => remote(op, target, detail, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_error_responses() {
        assert_eq!(classify(Some("NoSuchKey"), Some(404)), Class::NotFound);
        assert_eq!(
            classify(None, Some(404)),
            Class::NotFound,
            "a HEAD's 404 has no body"
        );
        assert_eq!(classify(Some("NoSuchBucket"), Some(404)), Class::NoSuchBucket);
        assert_eq!(classify(Some("NoSuchUpload"), Some(404)), Class::Refused);
        assert_eq!(classify(Some("InvalidRange"), Some(416)), Class::InvalidRange);
        assert_eq!(classify(Some("SlowDown"), Some(503)), Class::Transient);
        assert_eq!(classify(None, Some(503)), Class::Transient);
        assert_eq!(classify(Some("InternalError"), Some(500)), Class::Transient);
        assert_eq!(classify(Some("Whatever"), Some(502)), Class::Transient);
        assert_eq!(classify(None, Some(429)), Class::Transient);
        assert_eq!(classify(Some("RequestTimeout"), Some(400)), Class::Transient);
        assert_eq!(classify(Some("AccessDenied"), Some(403)), Class::AccessDenied);
        assert_eq!(classify(None, Some(403)), Class::AccessDenied);
        assert_eq!(
            classify(Some("InvalidAccessKeyId"), Some(403)),
            Class::BadCredentials
        );
        assert_eq!(
            classify(Some("ExpiredToken"), Some(400)),
            Class::ExpiredCredentials
        );
        assert_eq!(classify(Some("PermanentRedirect"), Some(301)), Class::WrongRegion);
        assert_eq!(
            classify(Some("AuthorizationHeaderMalformed"), Some(400)),
            Class::WrongRegion
        );
        assert_eq!(classify(Some("InvalidArgument"), Some(400)), Class::Refused);
        assert_eq!(
            classify(Some("PreconditionFailed"), Some(412)),
            Class::Exists,
            "If-None-Match: * on an existing object"
        );
        assert_eq!(classify(None, Some(412)), Class::Exists);
        assert_eq!(classify(None, None), Class::Refused);
    }
}
