//! The repository URL: `s3://BUCKET` or `s3://BUCKET/PREFIX`.

use crate::S3Error;

/// A parsed repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    /// The bucket name.
    pub(crate) bucket: String,
    /// The key prefix, without leading or trailing slash; empty for the bucket's root.
    pub(crate) prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket` or `s3://bucket/prefix` (slashes around the prefix are dropped).
    pub(crate) fn parse(url: &str) -> Result<Self, S3Error> {
        let invalid = |reason: String| S3Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it does not start with s3://".to_owned()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(invalid)?;
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
            return Err(invalid(format!(
                "the prefix {prefix:?} has an empty path segment (//)"
            )));
        }
        if prefix.chars().any(char::is_control) {
            return Err(invalid("the prefix contains a control character".to_owned()));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// Checks a bucket name against S3's rules for new buckets: 3 to 63 characters, lowercase
/// letters, digits, dots and hyphens, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("the bucket name is missing".to_owned());
    }
    let valid_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !valid_chars
        || !alnum(bucket.chars().next())
        || !alnum(bucket.chars().last())
    {
        return Err(format!(
            "{bucket:?} is not a valid bucket name (3 to 63 lowercase letters, digits, dots and \
             hyphens, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(String, String), String> {
        S3Url::parse(url)
            .map(|u| (u.bucket, u.prefix))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_bucket_and_prefix() {
        let ok = |b: &str, p: &str| Ok((b.to_owned(), p.to_owned()));
        assert_eq!(parse("s3://my-bucket"), ok("my-bucket", ""));
        assert_eq!(parse("s3://my-bucket/"), ok("my-bucket", ""));
        assert_eq!(parse("s3://my-bucket/repo"), ok("my-bucket", "repo"));
        assert_eq!(parse("s3://my.bucket.1/a/b/"), ok("my.bucket.1", "a/b"));
        assert_eq!(parse("s3://b12//a/b//"), ok("b12", "a/b"));
    }

    #[test]
    fn rejects_malformed_urls_saying_what_is_expected() {
        for url in [
            "",
            "my-bucket",
            "https://my-bucket/x",
            "s3://",
            "s3:///prefix",
            "s3://My_Bucket",
            "s3://ab",
            "s3://-bucket",
            "s3://bucket-/x",
            "s3://bucket/a//b",
        ] {
            let err = parse(url).expect_err(url);
            assert!(
                err.contains("expected s3://BUCKET or s3://BUCKET/PREFIX"),
                "{url}: {err}"
            );
        }
        assert!(parse("https://b/x")
            .unwrap_err()
            .contains("does not start with s3://"));
        assert!(parse("s3://My_Bucket")
            .unwrap_err()
            .contains("not a valid bucket name"));
        assert!(parse("s3://bucket/a//b")
            .unwrap_err()
            .contains("empty path segment"));
    }
}
