//! The appliance's state in a database: SQLite in the data directory by default, PostgreSQL
//! with `--database postgres://...`. One set of queries serves both through sqlx's Any driver:
//! only TEXT and BIGINT columns, `$N` placeholders (which SQLite takes too), times as
//! milliseconds since the epoch, documents as JSON text. Migrations (`migrations/`) are
//! embedded and run on open.
//!
//! Several appliances may share one PostgreSQL database: a due run is claimed by a conditional
//! update of its next run time (`policies::claim`), which exactly one of them wins.

pub mod inventory;
pub mod journals;
pub mod points;
pub mod policies;
pub mod sessions;
pub mod settings;
pub mod slots;
pub mod tokens;

use std::path::Path;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::ApplianceError;

/// The database, with its pool of connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: AnyPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Db {
    /// Opens (creating an SQLite file if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Db, ApplianceError> {
        sqlx::any::install_default_drivers();
        let shown = without_password(url);
        let failed = |e: &dyn std::fmt::Display| ApplianceError::Open {
            url: shown.clone(),
            message: e.to_string(),
        };
        let options: AnyConnectOptions = url.parse().map_err(|e: sqlx::Error| failed(&e))?;
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // SQLite has one writer: a few connections, each waiting for the lock.
            .max_connections(if sqlite { 4 } else { 10 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| failed(&e))?;
        MIGRATOR.run(&pool).await.map_err(|e| failed(&e))?;
        Ok(Db { pool })
    }

    /// The URL of the SQLite database in a data directory.
    pub fn sqlite_url(dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", dir.join("appliance.db").display())
    }
}

/// `url` with its password, if any, replaced by `***`, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the epoch, the database's time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A duration in milliseconds, as the database stores times (saturating: an absurd setting
/// means "never").
pub(crate) fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// A random identifier: `prefix` and 16 hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    // The system's randomness fails only on a broken system; the time then keeps ids apart.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        bytes = now_ms().to_be_bytes();
    }
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Reads a stored JSON document, naming it if it cannot be read.
pub(crate) fn from_doc<T: serde::de::DeserializeOwned>(
    what: impl FnOnce() -> String,
    doc: &str,
) -> Result<T, ApplianceError> {
    serde_json::from_str(doc).map_err(|e| ApplianceError::Damaged {
        what: what(),
        message: e.to_string(),
    })
}

/// A stored enum value (its serde name) read back; an unknown one is damage, named.
pub(crate) fn stored_name<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, ApplianceError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| ApplianceError::Damaged {
        what: what.to_owned(),
        message: format!("unknown value {s:?}"),
    })
}

/// A document as stored.
pub(crate) fn to_doc<T: serde::Serialize>(value: &T) -> String {
    // Serializing the appliance's own types (strings, numbers, maps with string keys) fails
    // only on a bug; an empty object then keeps the row readable.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            without_password("postgres://bulwark:s3cret@db/bulwark"),
            "postgres://bulwark:***@db/bulwark"
        );
        assert_eq!(
            without_password("postgres://bulwark@db/bulwark"),
            "postgres://bulwark@db/bulwark"
        );
        assert_eq!(without_password("sqlite:///x?mode=rwc"), "sqlite:///x?mode=rwc");
    }
}
