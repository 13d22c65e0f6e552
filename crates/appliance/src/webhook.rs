//! Webhooks: when a session ends in `warning` or `failed`, the appliance POSTs it as JSON to
//! the appliance's webhook (`bulwark serve --webhook URL`) and to its policy's (`webhook` in the
//! policy), each retried with exponential back-off. Every attempt that fails, and the outcome,
//! is a line of the session's log, so a webhook that stopped working is seen where the failure
//! it should have reported is.
//!
//! With a key (`--webhook-secret-file`), every call is signed: `X-Bulwark-Timestamp` (seconds
//! since the epoch) and `X-Bulwark-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY`,
//! so that a receiver can refuse forged calls and old ones replayed.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::db::sessions::{Item, SessionRecord, Status};
use crate::{Appliance, ApplianceError};

/// The key webhook calls are signed with. Only the HMAC key is kept, and its `Debug` prints
/// nothing of it.
#[derive(Clone)]
pub struct WebhookKey(Arc<ring::hmac::Key>);

/// The shortest secret taken: as long as the HMAC-SHA256 key it makes.
pub const MIN_SECRET_BYTES: usize = 32;

impl WebhookKey {
    /// The key of `secret` (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(secret: &[u8]) -> Result<WebhookKey, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a webhook secret needs at least {MIN_SECRET_BYTES} bytes, this one has {}; \
                 make one with `openssl rand -hex 32`",
                secret.len()
            ));
        }
        Ok(WebhookKey(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            secret,
        ))))
    }

    /// The value of `X-Bulwark-Signature` for `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: u64, body: &str) -> String {
        let tag = ring::hmac::sign(&self.0, format!("{timestamp}.{body}").as_bytes());
        format!("sha256={}", hex::encode(tag.as_ref()))
    }
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

/// How many times a webhook is tried in all.
pub const ATTEMPTS: u32 = 5;

/// What a webhook receives.
#[derive(Debug, Serialize)]
pub struct Notice<'a> {
    /// `session.ended`.
    pub event: &'static str,
    /// The appliance that ran the session.
    pub appliance: &'a str,
    /// The session, as `GET /api/v1/sessions/{id}` lists it.
    pub session: &'a SessionRecord,
    /// Its items that failed, each with its code and remedy.
    pub failures: Vec<&'a Item>,
}

/// Checks a webhook URL: `http://` or `https://` with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!("{url:?} is not an http:// or https:// URL with a host")),
    }
}

impl Appliance {
    /// Calls the webhooks for session `id` if it ended in `warning` or `failed`; in the
    /// background, since a webhook may take minutes of retries.
    pub(crate) fn session_ended(self: &Arc<Self>, id: &str) {
        let app = Arc::clone(self);
        let id = id.to_owned();
        self.runtime.spawn(async move {
            if let Err(e) = app.notify(&id).await {
                tracing::error!(session = %id, error = %e, "the webhooks could not be called");
            }
        });
    }

    async fn notify(self: &Arc<Self>, id: &str) -> Result<(), ApplianceError> {
        let Some(session) = self.db.session(id).await? else {
            return Ok(());
        };
        if !matches!(session.status, Status::Warning | Status::Failed) {
            return Ok(());
        }
        let mut urls: Vec<String> = self.settings.webhook.iter().cloned().collect();
        if let Some(policy) = &session.policy {
            if let Some(record) = self.db.policy(policy).await? {
                urls.extend(record.policy.webhook.filter(|u| !urls.contains(u)));
            }
        }
        if urls.is_empty() {
            return Ok(());
        }
        let items = self.db.items(id).await?;
        let notice = Notice {
            event: "session.ended",
            appliance: &self.settings.name,
            session: &session,
            failures: items.iter().filter(|i| i.status == Status::Failed).collect(),
        };
        let body = crate::db::to_doc(&notice);
        for url in urls {
            self.call(id, &url, &body).await?;
        }
        Ok(())
    }

    /// POSTs `body` to `url` until it answers 2xx or [`ATTEMPTS`] are spent, logging each
    /// failure in the session's log.
    async fn call(&self, session: &str, url: &str, body: &str) -> Result<(), ApplianceError> {
        let mut wait = self.settings.webhook_backoff;
        for attempt in 1..=ATTEMPTS {
            let (u, b, key) = (url.to_owned(), body.to_owned(), self.settings.webhook_key.clone());
            let outcome = tokio::task::spawn_blocking(move || post(&u, &b, key.as_ref()))
                .await
                .unwrap_or_else(|e| Err(format!("the call did not finish: {e}")));
            let (level, line) = match outcome {
                Ok(status) => ("info", format!("webhook {url} called: HTTP {status}")),
                Err(why) if attempt == ATTEMPTS => (
                    "error",
                    format!("webhook {url} failed {ATTEMPTS} times, given up: {why}; check the URL and that it answers 2xx to a POST"),
                ),
                Err(why) => (
                    "warn",
                    format!(
                        "webhook {url} attempt {attempt} of {ATTEMPTS} failed: {why}; trying again in {} s",
                        wait.as_secs_f64()
                    ),
                ),
            };
            let seq = self.db.last_log_seq(session).await? + 1;
            self.db.log(session, seq, level, &line).await?;
            if level != "warn" {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
        Ok(())
    }
}

/// One POST, signed with `key` if there is one; the HTTP status if it is 2xx, else why not.
fn post(url: &str, body: &str, key: Option<&WebhookKey>) -> Result<u16, String> {
    let mut request = client().post(url).header("Content-Type", "application/json");
    if let Some(key) = key {
        // Signed at each attempt: a retry is a new call, with a fresh timestamp.
        let now = u64::try_from(crate::db::now_ms() / 1000).unwrap_or(0);
        request = request
            .header("X-Bulwark-Timestamp", now.to_string())
            .header("X-Bulwark-Signature", key.sign(now, body));
    }
    let response = request.send(body).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The webhook client, made once: its TLS configuration loads the platform's trust store.
fn client() -> &'static ureq::Agent {
    static CLIENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("bulwark/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}
