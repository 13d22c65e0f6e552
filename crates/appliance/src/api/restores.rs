//! Restores: validated (the plan, or the refusal with its code and remedy), then run as a
//! session. The body takes the fields of `bulwark plan restore`; with `volumes`, only those
//! volumes are restored, as volumes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bulwark_model::{AccountId, InstanceId, KeyRef, Region, VolumeId};
use bulwark_plan::{Operation, Placement, RestoreSource};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, App, Body, Caller};
use crate::auth::Role;
use crate::db::sessions::SessionRecord;

/// A restore of a whole instance, as `bulwark plan restore` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The instance whose restore point is restored.
    #[schema(value_type = String)]
    instance: InstanceId,
    /// Its latest snapshot or its latest backup.
    #[schema(value_type = String, example = "snapshot")]
    from: RestoreSource,
    /// The target account.
    #[schema(value_type = String)]
    to_account: AccountId,
    /// The target region.
    #[schema(value_type = String)]
    to_region: Region,
    /// The key of the restored volumes (a key ARN of the target region, or `aws/ebs`).
    #[serde(default)]
    target_key: Option<String>,
    /// Where workers run, for restores from backups.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "backup-account")]
    workers: Option<Placement>,
    /// Restore only these volumes of the instance, left as volumes (no instance is launched).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    volumes: Vec<VolumeId>,
    /// With `volumes`: their availability zone (default: the region's first, or the worker's).
    #[serde(default)]
    zone: Option<String>,
    /// With `volumes`: attach them to this instance of the target account and region.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    attach_to: Option<InstanceId>,
    /// With `attach_to`: each volume's device, in the order of `volumes` (like `/dev/sdf`).
    #[serde(default)]
    devices: Vec<String>,
    /// With `volumes`: their type (default gp3), IOPS and throughput (MiB/s).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "io2")]
    volume_type: Option<bulwark_model::VolumeType>,
    /// With `volumes`: their provisioned IOPS.
    #[serde(default)]
    iops: Option<u32>,
    /// With `volumes`: their throughput in MiB/s.
    #[serde(default)]
    throughput: Option<u32>,
    /// The restored instance's subnet (default: the original's in its own account and
    /// region, else the target's default VPC).
    #[serde(default)]
    subnet: Option<String>,
    /// With `subnet`: the restored instance's security groups (default: the VPC's default).
    #[serde(default)]
    security_groups: Vec<String>,
    /// Leave the restored instance stopped.
    #[serde(default)]
    stopped: bool,
}

impl RestoreRequest {
    fn operation(&self) -> Result<Operation, ApiError> {
        let target_key = match &self.target_key {
            Some(k) => Some(
                KeyRef::parse_in(k, &self.to_account, &self.to_region).map_err(|e| {
                    ApiError::bad_request(
                        format!("field target_key: {e}"),
                        "give a key ARN of the target region, or aws/ebs",
                    )
                })?,
            ),
            None => None,
        };
        if self.volumes.is_empty() {
            if self.zone.is_some()
                || self.attach_to.is_some()
                || !self.devices.is_empty()
                || self.volume_type.is_some()
                || self.iops.is_some()
                || self.throughput.is_some()
            {
                return Err(ApiError::bad_request(
                    "fields zone, attach_to, devices, volume_type, iops and throughput: only a volume restore takes them",
                    "name the volumes to restore in volumes, or leave them out",
                ));
            }
            return Ok(Operation::Restore {
                instance: self.instance.clone(),
                from: self.from,
                to_account: self.to_account.clone(),
                to_region: self.to_region.clone(),
                target_key,
                workers: self.workers,
                launch: bulwark_plan::Launch {
                    subnet: self.subnet.clone(),
                    security_groups: self.security_groups.clone(),
                    stopped: self.stopped,
                },
            });
        }
        if self.subnet.is_some() || !self.security_groups.is_empty() || self.stopped {
            return Err(ApiError::bad_request(
                "fields subnet, security_groups and stopped: only a whole-instance restore takes them",
                "leave them out of a volume restore, or leave volumes out to restore the instance",
            ));
        }
        Ok(Operation::RestoreVolumes {
            instance: self.instance.clone(),
            volumes: self.volumes.clone(),
            from: self.from,
            to_account: self.to_account.clone(),
            to_region: self.to_region.clone(),
            target_key,
            workers: self.workers,
            zone: self.zone.clone(),
            attach_to: self.attach_to.clone(),
            devices: self.devices.clone(),
            volume_type: self.volume_type,
            iops: self.iops,
            throughput: self.throughput,
        })
    }
}

/// The outcome of a validation: the plan, or why AWS would refuse it.
#[derive(Serialize, ToSchema)]
pub struct Validation {
    /// Whether the restore can run.
    ok: bool,
    /// Its plan: every step, who acts in which account, which role needs which key and why.
    #[schema(value_type = Option<Object>)]
    plan: Option<bulwark_plan::Plan>,
    /// The refusal: code, message and remedy.
    #[schema(value_type = Option<Object>)]
    refusal: Option<bulwark_plan::Refusal>,
}

/// Plans a restore without running it.
#[utoipa::path(post, path = "/api/v1/restores/validate", request_body = RestoreRequest, responses((status = 200, body = Validation)))]
pub async fn validate(
    State(app): State<App>,
    caller: Caller,
    Body(request): Body<RestoreRequest>,
) -> Result<Json<Validation>, ApiError> {
    caller.needs(Role::Viewer)?;
    let operation = request.operation()?;
    let (estate, _) = app.discovered_estate().await?;
    Ok(Json(match bulwark_plan::plan(&estate, &operation) {
        Ok(plan) => Validation {
            ok: true,
            plan: Some(plan),
            refusal: None,
        },
        Err(refusal) => Validation {
            ok: false,
            plan: None,
            refusal: Some(refusal),
        },
    }))
}

/// Runs a restore as a session (202); a restore AWS would refuse is 400 with the refusal's
/// code and remedy, and nothing runs.
#[utoipa::path(post, path = "/api/v1/restores", request_body = RestoreRequest,
    responses((status = 202, body = SessionRecord), (status = 400, body = super::ErrorBody)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(request): Body<RestoreRequest>,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    caller.needs(Role::Operator)?;
    let operation = request.operation()?;
    let (estate, _) = app.discovered_estate().await?;
    if let Err(r) = bulwark_plan::plan(&estate, &operation) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            r.code.as_str(),
            r.message,
            r.remedy,
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(app.run_restore(operation).await?)))
}
