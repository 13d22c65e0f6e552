//! Errors of cloud calls: AWS's own error code and message, and the kind of failure the engine
//! acts on (retry a throttle, report a denial with its remedy, treat a missing resource as
//! already removed during cleanup).

use std::fmt;

use bulwark_model::Action;

/// What kind of failure a call met; the engine decides on this, never on the code string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The caller is not allowed (`UnauthorizedOperation`, `AccessDenied`,
    /// `AccessDeniedException`).
    AccessDenied,
    /// The resource does not exist (`InvalidSnapshot.NotFound`, `NoSuchEntity`, ...).
    NotFound,
    /// A parameter is invalid for this call (`InvalidParameterValue`, `ValidationException`).
    Invalid,
    /// AWS refuses the operation on this resource (`OperationNotPermitted`,
    /// `IncorrectState`, `KMSInvalidStateException`).
    NotPermitted,
    /// The resource already exists or is busy (`EntityAlreadyExists`, `VolumeInUse`).
    Conflict,
    /// Too many requests: retry later (`RequestLimitExceeded`, `RequestThrottledException`,
    /// `Throttling`).
    Throttled,
    /// A resource just made in IAM is not yet visible to the service called: IAM is
    /// eventually consistent, and the same call succeeds seconds later (RunInstances with a
    /// fresh instance profile: `InvalidParameterValue ... Invalid IAM Instance Profile`).
    Propagating,
    /// The service failed or could not be reached; retrying may help.
    Unavailable,
}

impl ErrorKind {
    /// The kind of an AWS error, as the services document their codes. Both clouds use this
    /// table, so that the engine sees the same kind for the same answer from either. The
    /// message matters in one case only, where AWS answers one code for two things: an
    /// instance profile that does not exist, and one IAM has not yet propagated.
    pub fn of(code: &str, message: &str) -> ErrorKind {
        if code == "InvalidParameterValue" && message.contains("Invalid IAM Instance Profile") {
            return ErrorKind::Propagating;
        }
        match code {
            "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "SignatureDoesNotMatch" => ErrorKind::AccessDenied,
            "NoSuchEntity"
            | "NotFoundException"
            | "ResourceNotFoundException"
            | "NoSuchBucket"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "QueueDoesNotExist" => ErrorKind::NotFound,
            c if c.ends_with(".NotFound")
                || c.ends_with(".Malformed") && c.starts_with("InvalidInstanceID") =>
            {
                ErrorKind::NotFound
            }
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "RequestThrottledException"
            | "RequestThrottled"
            | "SlowDown"
            | "TooManyRequestsException"
            | "ServiceQuotaExceededException"
            | "ConcurrentLimitExceededException" => ErrorKind::Throttled,
            "OperationNotPermitted"
            | "IncorrectState"
            | "IncorrectInstanceState"
            | "KMSInvalidStateException"
            | "DisabledException"
            | "UnsupportedOperation" => ErrorKind::NotPermitted,
            "EntityAlreadyExists"
            | "DeleteConflict"
            | "VolumeInUse"
            | "LimitExceeded"
            | "ConflictException"
            | "QueueAlreadyExists"
            | "InvalidSnapshot.InUse" => ErrorKind::Conflict,
            "InternalError"
            | "InternalFailure"
            | "InternalServerException"
            | "ServiceUnavailable"
            | "Unavailable"
            | "KMSInternalException"
            | "DependencyTimeoutException" => ErrorKind::Unavailable,
            _ => ErrorKind::Invalid,
        }
    }

    /// A stable name for programs: `access-denied`, `throttled`, ...
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "access-denied",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotPermitted => "not-permitted",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Propagating => "propagating",
            ErrorKind::Unavailable => "unavailable",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Propagating
        )
    }
}

/// A failed cloud call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub struct CloudError {
    /// The API, as an IAM action (`ec2:CreateVolume`).
    pub action: Action,
    /// AWS's error code (`OperationNotPermitted`).
    pub code: String,
    /// AWS's message.
    pub message: String,
    /// What the engine makes of it.
    pub kind: ErrorKind,
}

impl CloudError {
    /// An error of `action` with AWS's `code` and `message`.
    pub fn new(action: Action, kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        Self {
            action,
            code: code.to_owned(),
            message: message.into(),
            kind,
        }
    }

    /// An error as AWS answers it: its kind from the shared table ([`ErrorKind::of`]).
    pub fn aws(action: Action, code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(action, ErrorKind::of(code, &message), code, message)
    }

    /// The authorization failure each service answers with: EC2 `UnauthorizedOperation`,
    /// KMS and the EBS direct APIs `AccessDeniedException`, IAM, STS, SQS and S3
    /// `AccessDenied`.
    pub fn denied(action: Action, message: impl Into<String>) -> Self {
        let code = match action.service() {
            "ec2" => "UnauthorizedOperation",
            "kms" | "ebs" => "AccessDeniedException",
            _ => "AccessDenied",
        };
        Self::new(action, ErrorKind::AccessDenied, code, message)
    }

    /// A missing resource, with the service's code for it.
    pub fn not_found(action: Action, code: &str, message: impl Into<String>) -> Self {
        Self::new(action, ErrorKind::NotFound, code, message)
    }

    /// An invalid parameter, with the service's code for it.
    pub fn invalid(action: Action, code: &str, message: impl Into<String>) -> Self {
        Self::new(action, ErrorKind::Invalid, code, message)
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}: {}", self.action, self.code, self.message)
    }
}

/// The result of a cloud call.
pub type Result<T, E = CloudError> = std::result::Result<T, E>;
