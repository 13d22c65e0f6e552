//! `/metrics`, in Prometheus's text format, for a viewer token: sessions by kind and status,
//! bytes moved, seconds since each policy's last good run, instances and unprotected ones.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::estate::{protection_of, Protection};
use super::{ApiError, App, Caller};
use crate::auth::Role;
use crate::db::now_ms;

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The appliance's metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<App>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.needs(Role::Viewer)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP bulwark_sessions Sessions, by kind and status.\n# TYPE bulwark_sessions gauge"
    );
    for (kind, status, n) in app.db.session_counts().await? {
        let _ = writeln!(
            out,
            "bulwark_sessions{{kind=\"{}\",status=\"{}\"}} {n}",
            label(&kind),
            label(&status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP bulwark_bytes_moved_total Bytes moved by sessions.\n# TYPE bulwark_bytes_moved_total counter"
    );
    let _ = writeln!(out, "bulwark_bytes_moved_total {}", app.db.bytes_moved().await?);
    let policies = app.db.policies().await?;
    let successes = app.db.last_successes().await?;
    let now = now_ms();
    let _ = writeln!(
        out,
        "# HELP bulwark_policy_seconds_since_success Seconds since the policy's last run that succeeded (absent: never).\n# TYPE bulwark_policy_seconds_since_success gauge"
    );
    for p in &policies {
        if let Some((_, at)) = successes.iter().find(|(id, _)| id == &p.id) {
            let _ = writeln!(
                out,
                "bulwark_policy_seconds_since_success{{policy=\"{}\"}} {}",
                label(&p.policy.name),
                (now - at).max(0) / 1000
            );
        }
    }
    let Protection { estate, owners, .. } = protection_of(&app).await?;
    let _ = writeln!(
        out,
        "# HELP bulwark_instances Discovered instances.\n# TYPE bulwark_instances gauge"
    );
    let _ = writeln!(out, "bulwark_instances {}", estate.instances.len());
    let _ = writeln!(out, "# HELP bulwark_unprotected_instances Discovered instances no enabled policy selects.\n# TYPE bulwark_unprotected_instances gauge");
    let _ = writeln!(
        out,
        "bulwark_unprotected_instances {}",
        estate.instances.len() - owners.len()
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
