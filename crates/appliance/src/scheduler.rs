//! The loop that makes the appliance unattended: at each tick it recovers the sessions of
//! appliances that died, starts the policy runs that are due, refreshes the inventory and
//! checks the repository's health when they are due.
//!
//! A due run is claimed in the database before it starts (`Db::claim`), so that with several
//! appliances on one database it starts exactly once, and its next run is computed from now:
//! after downtime a missed run runs once, not once per missed slot. A policy already running
//! is not started again; its slot is skipped with a warning. Discovery and the health check are
//! claimed the same way (`Db::claim_periodic`), so that several appliances run each once.

use std::sync::Arc;

use crate::db::sessions::{Kind, Status};
use crate::db::{ms, now_ms};
use crate::{Appliance, ApplianceError};

/// Runs the scheduler until the process ends.
pub async fn run(app: Arc<Appliance>) {
    loop {
        if let Err(e) = tick(&app).await {
            tracing::error!(error = %e, "scheduler tick failed; retrying at the next");
        }
        tokio::time::sleep(app.settings.tick).await;
    }
}

/// One pass: leases, recovery, due policies, discovery, health check.
pub async fn tick(app: &Arc<Appliance>) -> Result<(), ApplianceError> {
    let mine: Vec<String> = crate::lock(&app.running).keys().cloned().collect();
    app.db.renew_leases(&mine, app.lease_until()).await?;
    app.db
        .renew_journals(&app.settings.name, app.lease_until())
        .await?;
    app.db.renew_slots(&app.settings.name, app.lease_until()).await?;
    recover(app).await?;
    let now = now_ms();
    // A health check holds the repository's exclusive lock: due runs wait for the next tick.
    let checking = app.db.kind_running(Kind::HealthCheck).await?;
    for due in app.db.due_policies(now).await? {
        if checking && due.policy.backups.is_some() {
            continue;
        }
        let Some(slot) = due.next_run else { continue };
        let next = match &due.policy.schedule {
            Some(s) => s.next_after(now).unwrap_or(None),
            None => None,
        };
        if !app.db.claim(&due.id, slot, next).await? || !due.policy.enabled {
            continue;
        }
        if app.db.policy_running(&due.id).await? {
            tracing::warn!(policy = %due.policy.name, "a run of this policy is still going: this slot is skipped");
            continue;
        }
        let session = app.run_policy(&due).await?;
        tracing::info!(policy = %due.policy.name, session = %session.id, "scheduled run started");
    }
    if let Some(every) = app.settings.discovery_every {
        if app.db.claim_periodic("discovery", now, ms(every), now).await? {
            app.run_discovery().await?;
        }
    }
    if let Some(every) = app.settings.health_check_every {
        let busy = checking
            || app.db.kind_running(Kind::Policy).await?
            || app.db.kind_running(Kind::Restore).await?;
        if !busy
            && app
                .db
                .claim_periodic("health-check", now, ms(every), now + ms(every))
                .await?
        {
            app.run_health_check(false).await?;
        }
    }
    Ok(())
}

/// Sessions whose appliance died (its lease lapsed) are marked failed; the engine sessions
/// whose journal's lease lapsed are recovered from their journals (what they created is
/// removed). The two leases lapse independently (a journal's may outlast its session's by a
/// tick), so the journals are looked at every tick, not only when a session is taken over.
pub async fn recover(app: &Arc<Appliance>) -> Result<(), ApplianceError> {
    let taken = app
        .db
        .take_over_lapsed(now_ms(), &app.settings.name, app.lease_until())
        .await?;
    let summary = recover_journals(app).await;
    if taken.is_empty() {
        return Ok(());
    }
    let summary = match summary {
        Some(Ok(left)) if left > 0 => {
            format!("{left} resource(s) could not be removed yet; recovery retries at every tick")
        }
        Some(Err(e)) => format!("recovery failed, and is tried again at every tick: {e}"),
        _ => "what it had created is removed from its journals".to_owned(),
    };
    for id in taken {
        for item in app.db.items(&id).await? {
            if matches!(item.status, Status::Pending | Status::Running) {
                app.db
                    .set_item(
                        &id,
                        item.position as usize,
                        Status::Failed,
                        Some("the appliance running it stopped"),
                        Some("appliance-stopped"),
                        Some("run the policy again"),
                    )
                    .await?;
            }
        }
        let message = format!("the appliance that ran this session stopped; {summary}");
        app.db
            .log(&id, app.db.last_log_seq(&id).await? + 1, "error", &message)
            .await?;
        app.db.finish_session(&id, Status::Failed, &message).await?;
        app.session_ended(&id);
        tracing::warn!(session = %id, "recovered a session of a stopped appliance");
    }
    Ok(())
}

/// Recovers the engine sessions whose journal's lease lapsed, unless a recovery of this
/// appliance still runs; answers how many resources are left, if it ran.
async fn recover_journals(app: &Arc<Appliance>) -> Option<Result<usize, bulwark_engine::EngineError>> {
    if app.recovering.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let engine = app.engine(app.estate.clone());
    let done = tokio::task::spawn_blocking(move || engine.recover()).await;
    app.recovering.store(false, std::sync::atomic::Ordering::SeqCst);
    let recovered = match done {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "recovery did not finish");
            return None;
        }
    };
    Some(recovered.map(|r| {
        for x in &r {
            tracing::warn!(session = %x.session, removed = x.removed, left = x.left.len(), "recovered an engine session of a stopped appliance");
        }
        r.iter().map(|x| x.left.len()).sum()
    }))
}
