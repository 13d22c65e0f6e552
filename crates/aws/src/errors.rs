//! AWS SDK errors as [`CloudError`]s: the service's code and message, and the kind the engine
//! acts on. Transport failures (timeouts, refused connections) are `Unavailable`, which the
//! engine retries.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use bulwark_cloud::{CloudError, ErrorKind};
use bulwark_model::Action;

/// Maps a failed SDK call of `action`.
pub(crate) fn map<E, R>(action: Action, error: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(e) => match error.code() {
            Some(code) => CloudError::aws(action, code, error.message().unwrap_or("")),
            // An answer the SDK could not read (no error code in it): say what came back.
            None => CloudError::new(
                action,
                ErrorKind::Unavailable,
                "UnreadableResponse",
                format!("{:?}", e.raw()),
            ),
        },
        SdkError::TimeoutError(_) => CloudError::new(
            action,
            ErrorKind::Unavailable,
            "Timeout",
            "the call timed out; AWS did not answer",
        ),
        SdkError::DispatchFailure(e) => CloudError::new(
            action,
            ErrorKind::Unavailable,
            "DispatchFailure",
            format!("the request could not be sent (network, endpoint or credentials): {e:?}"),
        ),
        _ => CloudError::new(
            action,
            ErrorKind::Unavailable,
            "ResponseError",
            format!("{error:?}"),
        ),
    }
}

/// A response AWS sent without a field the call always returns.
pub(crate) fn missing(action: Action, field: &str) -> CloudError {
    CloudError::new(
        action,
        ErrorKind::Unavailable,
        "MalformedResponse",
        format!("the response has no {field}"),
    )
}

/// Decodes a URL-encoded (RFC 3986) policy document, as IAM returns them.
pub(crate) fn url_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::url_decode;

    #[test]
    fn policy_documents_are_url_decoded() {
        assert_eq!(
            url_decode("%7B%22Version%22%3A%222012-10-17%22%7D"),
            r#"{"Version":"2012-10-17"}"#
        );
        assert_eq!(url_decode("{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
