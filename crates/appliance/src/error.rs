//! What can go wrong in the appliance itself (the API's answers to bad input are in `api`).

/// A failure of the appliance: its database, its listener, or stored state it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url}: {message}\n  what to do: check the --database URL (sqlite://PATH or postgres://USER@HOST/DB) and that the server runs")]
    Open {
        /// The database URL, without its password.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A query failed.
    #[error("database: {0}")]
    Database(String),
    /// A stored document cannot be read back (written by a newer release, or damaged).
    #[error("the stored {what} cannot be read: {message}")]
    Damaged {
        /// What it is (`policy nightly`, `instance i-...`).
        what: String,
        /// Why.
        message: String,
    },
    /// The system's random number generator failed.
    #[error("the system's random number generator failed: no token can be made safely")]
    NoRandomness,
    /// The API's address cannot be listened on.
    #[error("cannot listen on {address}: {error}\n  what to do: give a free --listen address")]
    Listen {
        /// The address.
        address: String,
        /// The error.
        error: std::io::Error,
    },
}

impl From<sqlx::Error> for ApplianceError {
    fn from(e: sqlx::Error) -> Self {
        ApplianceError::Database(e.to_string())
    }
}
