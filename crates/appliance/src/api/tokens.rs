//! Tokens, for admins: list, make (the token is shown once), revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, App, Body, Caller};
use crate::auth::Role;
use crate::db::tokens::TokenInfo;

/// Every token (not the tokens themselves: only their hashes are kept).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    caller.needs(Role::Admin)?;
    Ok(Json(app.db.tokens().await?))
}

/// A token to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it may do.
    role: Role,
    /// A name, to tell tokens apart.
    #[serde(default)]
    name: String,
}

/// A new token, shown this once.
#[derive(Serialize, ToSchema)]
pub struct MadeToken {
    /// The token: keep it; it cannot be shown again.
    token: String,
    /// Its record.
    #[serde(flatten)]
    info: TokenInfo,
}

/// Makes a token.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, responses((status = 201, body = MadeToken)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(new): Body<NewToken>,
) -> Result<(StatusCode, Json<MadeToken>), ApiError> {
    caller.needs(Role::Admin)?;
    let (token, info) = app.db.create_token(new.role, &new.name).await?;
    Ok((StatusCode::CREATED, Json(MadeToken { token, info })))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.needs(Role::Admin)?;
    if app.db.delete_token(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token", &id))
    }
}
