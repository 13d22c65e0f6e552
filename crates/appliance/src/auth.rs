//! Who may do what through the API. A token is 32 random bytes shown once (`bwk_` and 64 hex
//! digits); the database keeps its BLAKE3 hash, so a copy of the database opens nothing.
//! Roles are ordered: a viewer reads, an operator also runs policies and restores, an admin
//! also changes accounts, policies and tokens.

use std::str::FromStr;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a token may do; each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also runs policies, discovery and restores, and cancels sessions.
    Operator,
    /// Also changes policies and tokens.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("{s:?} is not a role: expected admin, operator or viewer")),
        }
    }
}

/// A new token, from the system's randomness (without it no token can be made safely).
pub fn new_token() -> Result<String, crate::ApplianceError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| crate::ApplianceError::NoRandomness)?;
    Ok(format!("bwk_{}", hex::encode(bytes)))
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_roles_ordered() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 68);
        assert_ne!(hash(&a), hash(&b));
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }
}
