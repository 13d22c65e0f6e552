//! Files of a restore point, without restoring a volume: a listing of a path of one of its
//! volumes, and a tar download of paths (`bulwark_engine::files`). A snapshot is read through
//! the EBS direct APIs as its account's backup role, a backup from the repository. And a
//! search of an instance's file indexes (`bulwark_engine::find`).

use std::collections::BTreeMap;
use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_engine::files::{FileEntry, FileSource, Files};
use bulwark_engine::find::{FindQuery, FindReport};
use bulwark_engine::EngineError;
use bulwark_fs::FsError;
use bulwark_model::InstanceId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, App, Caller, Params};
use crate::auth::Role;
use crate::db::points::{PointQuery, RestorePoint};

/// What to read.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    /// The path: `/` (the partitions), `/1/etc` (partition 1), `/0/...` (a filesystem on the
    /// whole disk).
    #[serde(default = "root")]
    path: String,
    /// Which volume of the restore point (needed when it has several).
    volume: Option<String>,
}

fn root() -> String {
    "/".into()
}

/// A path's listing.
#[derive(Serialize, ToSchema)]
pub struct Listing {
    /// The restore point.
    point: String,
    /// The volume read.
    volume: String,
    /// What was read, in words (the snapshot or repository restore point).
    source: String,
    /// The path listed.
    path: String,
    /// Its entries, by name (at `/`, the partitions).
    #[schema(value_type = Vec<Object>)]
    entries: Vec<FileEntry>,
    /// Bytes read from the snapshot or repository to answer.
    bytes_read: u64,
}

/// Lists a path of a volume of a restore point.
#[utoipa::path(get, path = "/api/v1/restore-points/{id}/files", params(("id" = String, Path), FileParams),
    responses((status = 200, body = Listing), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<FileParams>,
) -> Result<Json<Listing>, ApiError> {
    caller.needs(Role::Viewer)?;
    let (volume, source) = source_of(&app, &id, q.volume.as_deref()).await?;
    let path = q.path.clone();
    let listing = blocking(move || {
        let files = open(&app, &source)?;
        let entries = files.list(&path).map_err(|e| fs_error(&files, &path, e))?;
        Ok(Listing {
            point: id,
            volume,
            source: files.what.clone(),
            path,
            entries,
            bytes_read: files.bytes_read(),
        })
    })
    .await?;
    Ok(Json(listing))
}

/// Downloads a path of a volume of a restore point (with what is under it) as a tar stream:
/// modes, owners, times and symbolic links kept. Reading file contents is a restore:
/// operators and admins only.
#[utoipa::path(get, path = "/api/v1/restore-points/{id}/files/tar", params(("id" = String, Path), FileParams),
    responses((status = 200, content_type = "application/x-tar", description = "The tar stream"),
              (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub async fn tar(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<FileParams>,
) -> Result<Response, ApiError> {
    caller.needs(Role::Operator)?;
    let (_, source) = source_of(&app, &id, q.volume.as_deref()).await?;
    let path = q.path.clone();
    // Opened, and the path found, before the answer starts: what is missing is a 404.
    let files = blocking(move || {
        let files = open(&app, &source)?;
        files
            .volume()
            .metadata(&path)
            .map_err(|e| fs_error(&files, &path, e))?;
        Ok((files, path))
    })
    .await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let (files, path) = files;
        let mut out = Chunks {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let written = files
            .write_tar(&[path.as_str()], &mut out)
            .and_then(|_| out.flush().map_err(io_fs));
        if let Err(e) = written {
            // The client sees a cut stream, not a valid tar missing files.
            tracing::warn!(error = %e, "the tar download of {path} from {} failed", files.what);
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let name = format!(
        "{}.tar",
        id.chars().filter(char::is_ascii_alphanumeric).collect::<String>()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Bytes handed to the answer at a time.
const CHUNK: usize = 256 * 1024;

/// A writer that sends what it is given to the answer's stream, a chunk at a time.
struct Chunks {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

fn io_fs(e: io::Error) -> FsError {
    FsError::Io {
        offset: 0,
        len: 0,
        source: e,
    }
}

/// The restore point's volume to read: the one named, or its only one.
async fn source_of(app: &App, id: &str, volume: Option<&str>) -> Result<(String, FileSource), ApiError> {
    let query = PointQuery {
        instance: None,
        policy: None,
        expired: false,
    };
    let point: RestorePoint = app
        .db
        .points(query)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found("restore point", id))?;
    let volumes: Vec<(String, FileSource)> = if point.backups.is_empty() {
        point
            .snapshots
            .iter()
            .map(|s| (s.volume.to_string(), FileSource::Snapshot(s.snapshot.clone())))
            .collect()
    } else {
        point
            .backups
            .iter()
            .map(|b| (b.volume.clone(), FileSource::Backup(b.point.clone())))
            .collect()
    };
    let names = || {
        volumes
            .iter()
            .map(|(v, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match volume {
        Some(v) => volumes
            .iter()
            .find(|(name, _)| name == v)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("query volume: restore point {id} holds no volume {v}"),
                    format!("give one of its volumes: {}", names()),
                )
            }),
        None if volumes.len() == 1 => Ok(volumes[0].clone()),
        None => Err(ApiError::bad_request(
            format!("query volume: restore point {id} holds {} volumes", volumes.len()),
            format!("say which with volume=, one of: {}", names()),
        )),
    }
}

/// What to search for.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindParams {
    /// A name (`hosts`, `*.conf`), a path anywhere (`etc/*.conf`) or a whole path
    /// (`/1/etc/hosts`); `**` crosses directories.
    pattern: String,
    /// Only this volume's restore points.
    volume: Option<String>,
    /// Match regardless of case (NTFS and FAT volumes).
    #[serde(default)]
    ignore_case: bool,
    /// Most paths to answer (default 1000).
    #[serde(default)]
    limit: usize,
}

/// Which restore points of an instance hold the files a pattern matches.
#[derive(Serialize, ToSchema)]
pub struct FindAnswer {
    /// The instance.
    instance: String,
    /// The paths found with their versions, the repository's restore points searched and not
    /// searched (without a file index), and what their indexes could not cover.
    #[schema(value_type = Object)]
    report: FindReport,
    /// The appliance's restore point (`GET /api/v1/restore-points`) of each repository restore
    /// point the report names, where the appliance keeps it.
    restore_points: BTreeMap<String, String>,
}

/// Searches the file indexes of an instance's backups: which restore points hold a file, and
/// in what version, without reading any volume. Only backups made with a policy's
/// `file_index` (or `bulwark run backup --file-index`) have one.
#[utoipa::path(get, path = "/api/v1/instances/{id}/files", params(("id" = String, Path), FindParams),
    responses((status = 200, body = FindAnswer), (status = 400, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub async fn find(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<FindParams>,
) -> Result<Json<FindAnswer>, ApiError> {
    caller.needs(Role::Viewer)?;
    // An instance that is gone still has its restore points: it need not be in the estate.
    let instance: InstanceId = id.parse().map_err(|e| {
        ApiError::bad_request(
            format!("instance {id:?}: {e}"),
            "give an instance id like i-0123456789abcdef0",
        )
    })?;
    let query = PointQuery {
        instance: Some(&id),
        policy: None,
        expired: false,
    };
    let restore_points: BTreeMap<String, String> = app
        .db
        .points(query)
        .await?
        .into_iter()
        .flat_map(|p| p.backups.into_iter().map(move |b| (b.point, p.id.clone())))
        .collect();
    let query = FindQuery {
        pattern: q.pattern,
        instance: Some(instance),
        volume: q.volume,
        ignore_case: q.ignore_case,
        limit: q.limit,
    };
    query.check().map_err(|e| match e {
        EngineError::Browse { message, remedy } => {
            ApiError::bad_request(format!("query pattern: {message}"), remedy)
        }
        other => engine_error(other),
    })?;
    let engine_app = app.clone();
    let report = blocking(move || {
        engine_app
            .engine(engine_app.estate.clone())
            .find_files(&query)
            .map_err(engine_error)
    })
    .await?;
    let named = report.searched.iter().chain(&report.unindexed);
    let restore_points = named
        .filter_map(|p| restore_points.get(&p.id).map(|r| (p.id.clone(), r.clone())))
        .collect();
    Ok(Json(FindAnswer {
        instance: id,
        report,
        restore_points,
    }))
}

/// Opens a source with an engine on the appliance's estate.
fn open(app: &App, source: &FileSource) -> Result<Files, ApiError> {
    app.engine(app.estate.clone())
        .open_files(source)
        .map_err(engine_error)
}

/// What the engine answered a file request, as the API answers it.
fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Browse { message, remedy } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "browse-failed", message, remedy)
        }
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            &other.code(),
            other.to_string(),
            other.remedy(),
        ),
    }
}

/// What a filesystem answered, as the API answers it: a path that names nothing is 404, a bad
/// path 400, damage or what is not read 422.
fn fs_error(files: &Files, path: &str, e: FsError) -> ApiError {
    let message = format!("{}: {e}", files.what);
    match e {
        FsError::NotFound(_) | FsError::NotADirectory(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            message,
            format!("list the directory above {path} to see what it holds"),
        ),
        FsError::InvalidPath { .. } | FsError::SymlinkLoop(_) | FsError::NotASymlink(_) | FsError::IsADirectory(_) => {
            ApiError::bad_request(message, "paths start with a partition number: /1/etc/hosts (list / for the partitions)")
        }
        _ => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unreadable",
            message,
            "the filesystem is damaged or of a kind not read here: restore the volume instead (POST /api/v1/restores)",
        ),
    }
}

/// Runs filesystem work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("reading files failed: {e}"),
            "report it: a Bulwark bug",
        ))
    })
}
