//! The estate: accounts (with each region's last discovery), discovered instances with their
//! protection, restore points, and the protection report.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, App, Caller, Params};
use crate::auth::Role;
use crate::db::inventory::RegionStatus;
use crate::db::now_ms;
use crate::db::points::{PointQuery, RestorePoint};
use crate::db::sessions::SessionRecord;
use crate::policy::{owners, Policy};

/// A production account.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    /// The account id.
    id: String,
    /// Its backup role.
    backup_role: Option<String>,
    /// Its restore role.
    restore_role: Option<String>,
    /// Its worker role.
    worker_role: Option<String>,
    /// The last discovery in each region.
    regions: Vec<RegionStatus>,
}

/// The accounts of the estate.
#[utoipa::path(get, path = "/api/v1/accounts", responses((status = 200, body = Vec<AccountView>)))]
pub async fn accounts(State(app): State<App>, caller: Caller) -> Result<Json<Vec<AccountView>>, ApiError> {
    caller.needs(Role::Viewer)?;
    let regions = app.db.regions().await?;
    let out = app
        .estate
        .accounts
        .values()
        .map(|a| AccountView {
            id: a.id.to_string(),
            backup_role: a.backup_role.as_ref().map(ToString::to_string),
            restore_role: a.restore_role.as_ref().map(ToString::to_string),
            worker_role: a.worker_role.as_ref().map(ToString::to_string),
            regions: regions.iter().filter(|r| r.account == a.id).cloned().collect(),
        })
        .collect();
    Ok(Json(out))
}

/// A discovered instance and how it is protected.
#[derive(Serialize, ToSchema)]
pub struct InstanceView {
    /// The instance id.
    id: String,
    /// Its account.
    account: String,
    /// Its region.
    region: String,
    /// Its state.
    state: String,
    /// Its availability zone.
    availability_zone: Option<String>,
    /// Its type (`c6i.large`).
    instance_type: Option<String>,
    /// Its subnet.
    subnet: Option<String>,
    /// Its security groups.
    security_groups: Vec<String>,
    /// Its tags.
    tags: BTreeMap<String, String>,
    /// Its volumes: id, size, key, device, type, IOPS and throughput.
    #[schema(value_type = Vec<Object>)]
    volumes: Vec<serde_json::Value>,
    /// The policy that protects it (its id), if any.
    policy: Option<String>,
    /// When its newest restore point was made, if it has one.
    last_restore_point: Option<i64>,
}

/// The discovered instances, with their protection.
#[utoipa::path(get, path = "/api/v1/instances", responses((status = 200, body = Vec<InstanceView>)))]
pub async fn instances(State(app): State<App>, caller: Caller) -> Result<Json<Vec<InstanceView>>, ApiError> {
    caller.needs(Role::Viewer)?;
    let Protection {
        found,
        owners,
        newest,
        ..
    } = protection_of(&app).await?;
    let out = found
        .into_iter()
        .map(|d| {
            let id = d.instance.id.to_string();
            InstanceView {
                policy: owners.get(&d.instance.id).map(|(p, _)| p.clone()),
                last_restore_point: newest.get(&id).copied(),
                account: d.instance.account.to_string(),
                region: d.instance.region.to_string(),
                state: d.state,
                availability_zone: d.availability_zone,
                instance_type: d.setup.instance_type,
                subnet: d.setup.subnet,
                security_groups: d.setup.security_groups,
                tags: d.instance.tags,
                volumes: d
                    .instance
                    .volumes
                    .iter()
                    .zip(d.disks.iter().map(Some).chain(std::iter::repeat(None)))
                    .map(|(v, disk)| {
                        let p = disk.and_then(|d| d.performance);
                        serde_json::json!({
                            "id": v.id, "size_gib": v.size_gib, "key": v.key,
                            "device": disk.map(|d| &d.device),
                            "volume_type": p.map(|p| p.volume_type),
                            "iops": p.and_then(|p| p.iops),
                            "throughput": p.and_then(|p| p.throughput),
                        })
                    })
                    .collect(),
                id,
            }
        })
        .collect();
    Ok(Json(out))
}

/// The estate as discovered, and how each instance is protected: by which policy (its id and
/// the policy), and when its newest restore point was made.
pub(super) struct Protection {
    pub estate: bulwark_model::Estate,
    pub found: Vec<bulwark_engine::discover::Discovered>,
    pub owners: BTreeMap<bulwark_model::InstanceId, (String, Policy)>,
    pub newest: BTreeMap<String, i64>,
}

pub(super) async fn protection_of(app: &App) -> Result<Protection, ApiError> {
    let (estate, found) = app.discovered_estate().await?;
    let policies = enabled_policies(app).await?;
    let owners = owners(&estate, &policies)
        .into_iter()
        .map(|(id, owner)| (id, owner.clone()))
        .collect();
    let query = PointQuery {
        instance: None,
        policy: None,
        expired: false,
    };
    let mut newest = BTreeMap::new();
    for p in app.db.points(query).await? {
        let at = newest.entry(p.instance).or_insert(p.created_at);
        *at = (*at).max(p.created_at);
    }
    Ok(Protection {
        estate,
        found,
        owners,
        newest,
    })
}

async fn enabled_policies(app: &App) -> Result<Vec<(String, Policy)>, ApiError> {
    Ok(app
        .db
        .policies()
        .await?
        .into_iter()
        .filter(|p| p.policy.enabled)
        .map(|p| (p.id, p.policy))
        .collect())
}

/// Discovers the estate now; answers the discovery session.
#[utoipa::path(post, path = "/api/v1/discovery", responses((status = 202, body = SessionRecord)))]
pub async fn discover(
    State(app): State<App>,
    caller: Caller,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    caller.needs(Role::Operator)?;
    Ok((StatusCode::ACCEPTED, Json(app.run_discovery().await?)))
}

/// Which restore points.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PointParams {
    /// Of this instance.
    instance: Option<String>,
    /// Made by this policy (its id).
    policy: Option<String>,
    /// Expired ones too.
    #[serde(default)]
    expired: bool,
}

/// Restore points (snapshots and replicas), newest first: where they are and what they hold.
#[utoipa::path(get, path = "/api/v1/restore-points", params(PointParams), responses((status = 200, body = Vec<RestorePoint>)))]
pub async fn restore_points(
    State(app): State<App>,
    caller: Caller,
    Params(q): Params<PointParams>,
) -> Result<Json<Vec<RestorePoint>>, ApiError> {
    caller.needs(Role::Viewer)?;
    let query = PointQuery {
        instance: q.instance.as_deref(),
        policy: q.policy.as_deref(),
        expired: q.expired,
    };
    Ok(Json(app.db.points(query).await?))
}

/// Instances no policy protects, and those whose newest restore point is older than their
/// policy's interval.
#[derive(Serialize, ToSchema)]
pub struct ProtectionReport {
    /// No enabled policy selects them.
    unprotected: Vec<String>,
    /// Their newest restore point (or none) is older than the interval between two runs of
    /// their policy's schedule.
    stale: Vec<String>,
}

/// The protection report.
#[utoipa::path(get, path = "/api/v1/reports/protection", responses((status = 200, body = ProtectionReport)))]
pub async fn protection(State(app): State<App>, caller: Caller) -> Result<Json<ProtectionReport>, ApiError> {
    caller.needs(Role::Viewer)?;
    let Protection {
        estate,
        owners,
        newest,
        ..
    } = protection_of(&app).await?;
    let now = now_ms();
    let mut report = ProtectionReport {
        unprotected: Vec::new(),
        stale: Vec::new(),
    };
    for instance in &estate.instances {
        let id = instance.id.to_string();
        let Some((_, policy)) = owners.get(&instance.id) else {
            report.unprotected.push(id);
            continue;
        };
        let Some(schedule) = &policy.schedule else {
            continue;
        };
        // The interval: from one run to the next, seen from now.
        let interval = match schedule.next_after(now).ok().flatten() {
            Some(next) => schedule.next_after(next).ok().flatten().map(|after| after - next),
            None => None,
        };
        let last = newest.get(&id).copied();
        if let Some(interval) = interval {
            if last.is_none_or(|t| now - t > interval) {
                report.stale.push(id);
            }
        }
    }
    Ok(Json(report))
}
