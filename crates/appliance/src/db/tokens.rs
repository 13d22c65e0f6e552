//! API tokens: only a hash of each is stored.

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{new_id, now_ms, Db};
use crate::auth::{self, Role};
use crate::ApplianceError;

/// A token, as listed (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
}

impl Db {
    /// Makes a token: answers the token itself (shown once) and its record.
    pub async fn create_token(&self, role: Role, name: &str) -> Result<(String, TokenInfo), ApplianceError> {
        let token = auth::new_token()?;
        let info = TokenInfo {
            id: new_id("tok"),
            name: name.to_owned(),
            role,
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO tokens (id, name, role, hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&info.id)
            .bind(&info.name)
            .bind(role.as_str())
            .bind(auth::hash(&token))
            .bind(info.created_at)
            .execute(&self.pool)
            .await?;
        Ok((token, info))
    }

    /// The role of a presented token, if it is one.
    pub async fn token_role(&self, token: &str) -> Result<Option<Role>, ApplianceError> {
        let row = sqlx::query("SELECT role FROM tokens WHERE hash = $1")
            .bind(auth::hash(token))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        Ok(role.parse().ok())
    }

    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ApplianceError> {
        let rows = sqlx::query("SELECT id, name, role, created_at FROM tokens ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let role: String = r.try_get("role")?;
            out.push(TokenInfo {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: role.parse().map_err(|_| ApplianceError::Damaged {
                    what: "token".into(),
                    message: format!("unknown role {role:?}"),
                })?,
                created_at: r.try_get("created_at")?,
            });
        }
        Ok(out)
    }

    /// Revokes a token; answers whether it existed.
    pub async fn delete_token(&self, id: &str) -> Result<bool, ApplianceError> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
