//! Sessions: the list (filters and paging), one with its items, its log, cancel.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, App, Caller, Params};
use crate::auth::Role;
use crate::db::sessions::{Item, LogLine, SessionFilter, SessionRecord, Status};

/// Sessions, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", params(SessionFilter), responses((status = 200, body = Vec<SessionRecord>)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Params(filter): Params<SessionFilter>,
) -> Result<Json<Vec<SessionRecord>>, ApiError> {
    caller.needs(Role::Viewer)?;
    Ok(Json(app.db.sessions(&filter).await?))
}

/// A session with its items.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The session.
    #[serde(flatten)]
    session: SessionRecord,
    /// One per instance (or account and region).
    items: Vec<Item>,
}

/// One session, with its items.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", responses((status = 200, body = SessionView), (status = 404, body = super::ErrorBody)))]
pub async fn one(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    caller.needs(Role::Viewer)?;
    let session = app
        .db
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("session", &id))?;
    let items = app.db.items(&id).await?;
    Ok(Json(SessionView { session, items }))
}

/// Which log lines.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// After this line number (0: from the start).
    #[serde(default)]
    after: i64,
    /// At most this many (default 1000).
    limit: Option<u32>,
}

/// A session's log.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/log", params(LogParams), responses((status = 200, body = Vec<LogLine>), (status = 404, body = super::ErrorBody)))]
pub async fn log(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<LogParams>,
) -> Result<Json<Vec<LogLine>>, ApiError> {
    caller.needs(Role::Viewer)?;
    if app.db.session(&id).await?.is_none() {
        return Err(ApiError::not_found("session", &id));
    }
    Ok(Json(
        app.db.log_lines(&id, q.after, q.limit.unwrap_or(1000)).await?,
    ))
}

/// Cancels a running session: it stops at its next step and removes what it created.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/cancel",
    responses((status = 202, body = SessionRecord), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn cancel(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    caller.needs(Role::Operator)?;
    let session = app
        .db
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("session", &id))?;
    if session.status != Status::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("session {id} is {}, not running", session.status.as_str()),
            "only a running session can be cancelled",
        ));
    }
    if !app.cancel(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("session {id} runs on appliance {}", session.owner),
            "cancel it through that appliance",
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(session)))
}
