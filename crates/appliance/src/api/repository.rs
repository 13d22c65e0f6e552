//! The repository: where image-level backups go, and its last health check; a health check on
//! demand.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, App, Caller, Params};
use crate::auth::Role;
use crate::db::sessions::{Kind, SessionRecord};
use crate::health::Health;

/// The repository of the estate.
#[derive(Serialize, ToSchema)]
pub struct RepositoryView {
    /// Its bucket.
    bucket: String,
    /// The key prefix in the bucket.
    prefix: String,
    /// The bucket's region.
    region: String,
    /// The role that reads and writes it.
    role: String,
    /// The last health check, if one ran.
    last_health_check: Option<Health>,
}

/// The repository and its last health check.
#[utoipa::path(get, path = "/api/v1/repository", responses(
    (status = 200, body = RepositoryView),
    (status = 404, description = "The estate has no repository")))]
pub async fn show(State(app): State<App>, caller: Caller) -> Result<Json<RepositoryView>, ApiError> {
    caller.needs(Role::Viewer)?;
    let repository = app.estate.repository.as_ref().ok_or_else(no_repository)?;
    Ok(Json(RepositoryView {
        bucket: repository.bucket.to_string(),
        prefix: repository.prefix.clone(),
        region: repository.region.to_string(),
        role: repository.role.to_string(),
        last_health_check: app.health().await?,
    }))
}

/// How to check.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// Also read and authenticate every block (slow: reads the whole repository).
    #[serde(default)]
    read_data: bool,
}

/// Runs a health check now (prune, then verify); answers its session.
#[utoipa::path(post, path = "/api/v1/repository/check", params(CheckParams), responses(
    (status = 202, body = SessionRecord),
    (status = 404, description = "The estate has no repository"),
    (status = 409, description = "A health check runs already")))]
pub async fn check(
    State(app): State<App>,
    caller: Caller,
    Params(params): Params<CheckParams>,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    caller.needs(Role::Operator)?;
    if app.estate.repository.is_none() {
        return Err(no_repository());
    }
    if app.db.kind_running(Kind::HealthCheck).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "a health check of the repository runs already",
            "wait for it to end (GET /api/v1/sessions?kind=health-check)",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(app.run_health_check(params.read_data).await?),
    ))
}

fn no_repository() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "the estate has no [repository]",
        "add a [repository] to the estate file and restart with --estate",
    )
}
