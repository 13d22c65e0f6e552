//! The REST API, JSON under `/api/v1`, described by the OpenAPI document at
//! `/api/v1/openapi.json` (generated from these handlers by utoipa).
//!
//! Every request but `health` and the document carries `Authorization: Bearer TOKEN`: none is
//! 401, a token whose role is too low 403. A body or query that cannot be read is 400 naming
//! the field and what is expected; an unknown id 404. Only a failure of the appliance itself
//! (its database) is 500: never bad input.

mod estate;
mod files;
mod metrics;
mod policies;
mod repository;
mod restores;
mod sessions;
mod tokens;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Role;
use crate::policy::Problem;
use crate::{Appliance, ApplianceError};

type App = Arc<Appliance>;

/// The API's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/accounts", get(estate::accounts))
        .route("/api/v1/instances", get(estate::instances))
        .route("/api/v1/instances/{id}/files", get(files::find))
        .route("/api/v1/discovery", post(estate::discover))
        .route("/api/v1/restore-points", get(estate::restore_points))
        .route("/api/v1/restore-points/{id}/files", get(files::list))
        .route("/api/v1/restore-points/{id}/files/tar", get(files::tar))
        .route("/api/v1/reports/protection", get(estate::protection))
        .route("/api/v1/policies", get(policies::list).post(policies::create))
        .route("/api/v1/policies/validate", post(policies::validate))
        .route(
            "/api/v1/policies/{id}",
            get(policies::one).put(policies::update).delete(policies::delete),
        )
        .route("/api/v1/policies/{id}/run", post(policies::run))
        .route("/api/v1/repository", get(repository::show))
        .route("/api/v1/repository/check", post(repository::check))
        .route("/api/v1/restores/validate", post(restores::validate))
        .route("/api/v1/restores", post(restores::create))
        .route("/api/v1/sessions", get(sessions::list))
        .route("/api/v1/sessions/{id}", get(sessions::one))
        .route("/api/v1/sessions/{id}/log", get(sessions::log))
        .route("/api/v1/sessions/{id}/cancel", post(sessions::cancel))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::delete))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .with_state(app)
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Bulwark appliance API", description = "Inventory, policies, sessions and restore points of a Bulwark appliance."),
    paths(
        health, openapi,
        estate::accounts, estate::instances, estate::discover, estate::restore_points, estate::protection,
        files::list, files::tar, files::find,
        policies::list, policies::create, policies::validate, policies::one, policies::update, policies::delete, policies::run,
        repository::show, repository::check,
        restores::validate, restores::create,
        sessions::list, sessions::one, sessions::log, sessions::cancel,
        metrics::metrics,
        tokens::list, tokens::create, tokens::delete,
    ),
    components(schemas(ErrorBody, ErrorDetail, Problem, Role)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The appliance answers.
#[utoipa::path(get, path = "/api/v1/health", security(()), responses((status = 200, description = "The appliance runs")))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", security(()), responses((status = 200, description = "The OpenAPI 3 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such route",
        "see /api/v1/openapi.json for the API's routes",
    )
}

/// An error answer: `{"error": {"code", "message", "remedy", "problems"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`bad-request`, `unauthorized`, `forbidden`, `not-found`, `conflict`,
    /// `invalid-policy`, `internal`).
    code: String,
    /// What is wrong.
    message: String,
    /// What to do.
    remedy: String,
    /// Each problem, for a policy that does not validate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
}

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: ErrorDetail,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                remedy: remedy.into(),
                problems: Vec::new(),
            },
        }
    }

    fn bad_request(message: impl Into<String>, remedy: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message, remedy)
    }

    fn not_found(what: &str, id: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("there is no {what} {id}"),
            format!("list the {what}s to find its id"),
        )
    }

    fn invalid_policy(problems: Vec<Problem>) -> ApiError {
        let (first, remedy) = problems.first().map_or_else(
            || (String::new(), String::new()),
            |p| (format!("; the first: {}: {}", p.at, p.message), p.remedy.clone()),
        );
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-policy",
            format!("the policy has {} problem(s){first}", problems.len()),
            remedy,
        );
        e.detail.problems = problems;
        e
    }
}

impl From<ApplianceError> for ApiError {
    fn from(e: ApplianceError) -> Self {
        tracing::error!(error = %e, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
            "see the appliance's log; retry once it is resolved",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.detail })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The caller, by its token.
pub struct Caller(Role);

impl Caller {
    /// Refuses a caller whose role is below `role`.
    fn needs(&self, role: Role) -> Result<(), ApiError> {
        if self.0 >= role {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs a token of role {} or above; this one is {}",
                role.as_str(),
                self.0.as_str()
            ),
            "use a token with that role (`bulwark token create --role ...`)",
        ))
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let unauthorized = |message: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message,
                "send Authorization: Bearer TOKEN, with a token from `bulwark token create`",
            )
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("no token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
        match app.db.token_role(token).await? {
            Some(role) => Ok(Caller(role)),
            None => Err(unauthorized(
                "the token is not known (revoked, or of another appliance)",
            )),
        }
    }
}

/// A JSON body, read strictly: a body that does not match names the field and what it expects.
pub struct Body<T>(T);

impl<T: DeserializeOwned> FromRequest<App> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, app).await.map_err(|e| {
            ApiError::bad_request(format!("the body cannot be read: {e}"), "send a JSON body")
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." {
                "the body".to_owned()
            } else {
                format!("field {at}")
            };
            ApiError::bad_request(
                format!("{at}: {}", e.inner()),
                "correct that field; see /api/v1/openapi.json",
            )
        })?;
        de.end()
            .map_err(|e| ApiError::bad_request(format!("the body: {e}"), "send one JSON value"))?;
        Ok(Body(value))
    }
}

/// Query parameters, read strictly.
pub struct Params<T>(T);

impl<T: DeserializeOwned> FromRequestParts<App> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &App) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| {
                ApiError::bad_request(
                    format!("query {query:?}: {}", e.body_text()),
                    "see the route's parameters in /api/v1/openapi.json",
                )
            })
    }
}
