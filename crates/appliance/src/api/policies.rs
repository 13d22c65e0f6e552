//! Policies: create (validated against the discovered estate first), read, replace, delete,
//! run now.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, App, Body, Caller};
use crate::auth::Role;
use crate::db::now_ms;
use crate::db::policies::PolicyRecord;
use crate::db::sessions::SessionRecord;
use crate::policy::{Policy, Problem};

/// Validates a policy: its fields, and the planner over every instance it selects.
async fn checked(app: &App, policy: &Policy) -> Result<Option<i64>, ApiError> {
    let (estate, _) = app.discovered_estate().await?;
    let problems = policy.validate(&estate);
    if !problems.is_empty() {
        return Err(ApiError::invalid_policy(problems));
    }
    Ok(match &policy.schedule {
        Some(s) => s
            .next_after(now_ms())
            .map_err(|p| ApiError::invalid_policy(vec![p]))?,
        None => None,
    })
}

/// Every policy, highest priority first.
#[utoipa::path(get, path = "/api/v1/policies", responses((status = 200, body = Vec<PolicyRecord>)))]
pub async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Vec<PolicyRecord>>, ApiError> {
    caller.needs(Role::Viewer)?;
    Ok(Json(app.db.policies().await?))
}

/// Creates a policy, once it validates.
#[utoipa::path(post, path = "/api/v1/policies", request_body = Policy,
    responses((status = 201, body = PolicyRecord), (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(policy): Body<Policy>,
) -> Result<(StatusCode, Json<PolicyRecord>), ApiError> {
    caller.needs(Role::Admin)?;
    let next = checked(&app, &policy).await?;
    match app.db.create_policy(&policy, next).await? {
        Some(record) => Ok((StatusCode::CREATED, Json(record))),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a policy named {:?} exists", policy.name),
            "choose another name, or PUT to the existing policy",
        )),
    }
}

/// Validates a policy without saving it: the problems, each with its remedy (empty if none).
#[utoipa::path(post, path = "/api/v1/policies/validate", request_body = Policy, responses((status = 200, body = Vec<Problem>)))]
pub async fn validate(
    State(app): State<App>,
    caller: Caller,
    Body(policy): Body<Policy>,
) -> Result<Json<Vec<Problem>>, ApiError> {
    caller.needs(Role::Viewer)?;
    let (estate, _) = app.discovered_estate().await?;
    Ok(Json(policy.validate(&estate)))
}

/// One policy.
#[utoipa::path(get, path = "/api/v1/policies/{id}", responses((status = 200, body = PolicyRecord), (status = 404, body = super::ErrorBody)))]
pub async fn one(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PolicyRecord>, ApiError> {
    caller.needs(Role::Viewer)?;
    app.db
        .policy(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("policy", &id))
}

/// Replaces a policy, once the new one validates.
#[utoipa::path(put, path = "/api/v1/policies/{id}", request_body = Policy,
    responses((status = 200, body = PolicyRecord), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn update(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Body(policy): Body<Policy>,
) -> Result<Json<PolicyRecord>, ApiError> {
    caller.needs(Role::Admin)?;
    let next = checked(&app, &policy).await?;
    if !app.db.update_policy(&id, &policy, next).await? {
        return Err(ApiError::not_found("policy", &id));
    }
    Ok(Json(PolicyRecord {
        id,
        policy,
        next_run: next,
    }))
}

/// Deletes a policy; its restore points stay (and are no longer expired).
#[utoipa::path(delete, path = "/api/v1/policies/{id}", responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.needs(Role::Admin)?;
    if app.db.delete_policy(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("policy", &id))
    }
}

/// Runs a policy now; answers its session.
#[utoipa::path(post, path = "/api/v1/policies/{id}/run",
    responses((status = 202, body = SessionRecord), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn run(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    caller.needs(Role::Operator)?;
    let record = app
        .db
        .policy(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("policy", &id))?;
    if app.db.policy_running(&id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("policy {} is running", record.policy.name),
            "wait for its session to end, or cancel it",
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(app.run_policy(&record).await?)))
}
