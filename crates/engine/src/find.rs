//! "Which restore points hold this file, and in what version": a search of the file indexes
//! that backups with `file_index` keep with their restore points, across every restore point
//! of an instance (or of a volume), without reading any volume.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bulwark_model::InstanceId;
use bulwark_repo::{EntryKind, FileEntry, Manifest, Repository};
use chrono::{DateTime, Utc};
use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use crate::record::InstanceRecord;
use crate::{Engine, EngineError};

/// Most distinct paths a search answers by default.
pub const DEFAULT_LIMIT: usize = 1000;

/// What to search.
#[derive(Clone, Debug, Default)]
pub struct FindQuery {
    /// A glob: without a `/`, matched against names (`hosts`, `*.conf`); with one, against
    /// whole paths, anywhere unless it starts with `/` (`etc/*.conf`, `/1/etc/hosts`). `*`
    /// and `?` stay within a name, `**` crosses directories.
    pub pattern: String,
    /// Only the restore points of this instance (as their instance record names it).
    pub instance: Option<InstanceId>,
    /// Only the restore points of this volume.
    pub volume: Option<String>,
    /// Match names regardless of case (for NTFS and FAT volumes).
    pub ignore_case: bool,
    /// Most distinct paths to answer (0: [`DEFAULT_LIMIT`]).
    pub limit: usize,
}

impl FindQuery {
    /// Checks the pattern, before anything is read.
    pub fn check(&self) -> Result<(), EngineError> {
        matcher(self).map(drop)
    }
}

/// What a search found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FindReport {
    /// The paths found, in order, each with its versions.
    pub found: Vec<Found>,
    /// Restore points searched (those with a file index), oldest first.
    pub searched: Vec<PointRef>,
    /// Restore points of the instance or volume without a file index (backed up without it,
    /// or by an older Bulwark): not searched.
    pub unindexed: Vec<PointRef>,
    /// What their indexes say was not indexed (an unsupported partition, a damaged
    /// directory), with the restore point.
    pub problems: Vec<String>,
    /// More paths matched than the limit: narrow the pattern.
    pub truncated: bool,
}

/// A path and the versions of it that restore points hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The path (`/1/etc/hosts`), UTF-8 with what is not replaced.
    pub path: String,
    /// Its versions, oldest first: a version is a kind, size and modification time.
    pub versions: Vec<Version>,
}

/// One version of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Version {
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: EntryKind,
    /// Bytes.
    pub size: u64,
    /// Last modification.
    pub mtime: Option<DateTime<Utc>>,
    /// Permission bits, octal.
    pub mode: String,
    /// Owner and group.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The restore points that hold it, oldest first.
    pub points: Vec<PointRef>,
}

/// A restore point, as a search names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PointRef {
    /// Its id.
    pub id: String,
    /// When its data was read.
    pub time: DateTime<Utc>,
    /// Its volume.
    pub volume: String,
}

/// What tells two versions apart.
type VersionKey = (EntryKind, u64, i64, u32);
/// Each version of a path: its first entry seen, and the restore points (by position in the
/// report's `searched`) that hold it.
type Versions = BTreeMap<VersionKey, (FileEntry, Vec<usize>)>;

/// Searches the file indexes of `repo` for `query`.
pub fn find_files(repo: &Repository, query: &FindQuery) -> Result<FindReport, EngineError> {
    let matcher = matcher(query)?;
    let limit = if query.limit == 0 {
        DEFAULT_LIMIT
    } else {
        query.limit
    };
    let unreadable = |e: bulwark_repo::RepoError| EngineError::Browse {
        message: format!("the repository: {e}"),
        remedy: "check that the repository and its key are the right ones, then run `bulwark image verify`"
            .into(),
    };
    let mut points: Vec<(PointRef, Manifest)> = repo
        .points()
        .map_err(unreadable)?
        .into_iter()
        .filter(|(_, m)| query.volume.as_ref().is_none_or(|v| *v == m.volume_id))
        .filter(|(_, m)| {
            query
                .instance
                .as_ref()
                .is_none_or(|i| instance_of(m).as_ref() == Some(i))
        })
        .map(|(id, m)| {
            let point = PointRef {
                id: id.to_hex(),
                time: m.time,
                volume: m.volume_id.clone(),
            };
            (point, m)
        })
        .collect();
    points.sort_by(|a, b| (a.0.time, &a.0.id).cmp(&(b.0.time, &b.0.id)));

    let mut report = FindReport::default();
    let mut found: BTreeMap<Vec<u8>, Versions> = BTreeMap::new();
    let index = if points.iter().any(|(_, m)| m.files.is_some()) {
        repo.load_index().map_err(unreadable)?
    } else {
        Default::default()
    };
    for (point, manifest) in points {
        let Some(files) = &manifest.files else {
            report.unindexed.push(point);
            continue;
        };
        let at = report.searched.len();
        let short = &point.id[..8];
        report.problems.extend(
            files
                .problems
                .iter()
                .map(|p| format!("restore point {short}: {p}")),
        );
        let read = repo.for_each_file(&index, files, |entries| {
            for e in entries
                .iter()
                .filter(|e| matcher.is_match(Path::new(OsStr::from_bytes(&e.path))))
            {
                if !found.contains_key(&e.path) && found.len() >= limit {
                    report.truncated = true;
                    continue;
                }
                let key = (e.kind, e.size, e.mtime_secs, e.mtime_nanos);
                let versions = found.entry(e.path.clone()).or_default();
                let version = versions.entry(key).or_insert_with(|| (e.clone(), Vec::new()));
                if version.1.last() != Some(&at) {
                    version.1.push(at);
                }
            }
            Ok::<(), bulwark_repo::RepoError>(())
        });
        if let Err(e) = read {
            report.problems.push(format!(
                "restore point {short}: its file index cannot be read ({e}); run `bulwark image verify`"
            ));
        }
        report.searched.push(point);
    }
    report.found = found
        .into_iter()
        .map(|(path, versions)| {
            let mut versions: Vec<Version> = versions
                .into_values()
                .map(|(e, at)| Version {
                    kind: e.kind,
                    size: e.size,
                    mtime: DateTime::from_timestamp(e.mtime_secs, e.mtime_nanos),
                    mode: format!("{:04o}", e.mode & 0o7777),
                    uid: e.uid,
                    gid: e.gid,
                    points: at.iter().map(|i| report.searched[*i].clone()).collect(),
                })
                .collect();
            versions.sort_by(|a, b| {
                (&a.points[0].time, &a.points[0].id).cmp(&(&b.points[0].time, &b.points[0].id))
            });
            Found {
                path: String::from_utf8_lossy(&path).into_owned(),
                versions,
            }
        })
        .collect();
    Ok(report)
}

impl Engine {
    /// Searches the file indexes of the estate's repository (read as the repository role).
    pub fn find_files(&self, query: &FindQuery) -> Result<FindReport, EngineError> {
        find_files(&self.repository("search")?, query)
    }
}

/// The instance a restore point's record names.
fn instance_of(manifest: &Manifest) -> Option<InstanceId> {
    manifest
        .instance
        .as_deref()
        .and_then(InstanceRecord::parse)
        .map(|r| r.instance)
}

/// The glob of a query: names, or paths anywhere, or whole paths (see [`FindQuery::pattern`]).
fn matcher(query: &FindQuery) -> Result<GlobMatcher, EngineError> {
    let pattern = query.pattern.trim();
    if pattern.is_empty() {
        return Err(EngineError::Browse {
            message: "an empty pattern".into(),
            remedy: "give a name (`hosts`), a glob (`*.conf`) or a path (`etc/hosts`, `/1/etc/hosts`)".into(),
        });
    }
    let full = if pattern.starts_with('/') {
        pattern.to_owned()
    } else {
        // A name, or a path, anywhere: after any directories.
        format!("**/{pattern}")
    };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .case_insensitive(query.ignore_case)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| EngineError::Browse {
            message: format!("pattern {pattern:?}: {e}"),
            remedy: "`*` and `?` match within a name, `**` across directories, `[abc]` one of the characters; quote the pattern for the shell".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        let query = FindQuery {
            pattern: pattern.into(),
            ..FindQuery::default()
        };
        matcher(&query).unwrap().is_match(path)
    }

    #[test]
    fn patterns_match_names_paths_anywhere_and_whole_paths() {
        assert!(matches("hosts", "/1/etc/hosts"));
        assert!(!matches("hosts", "/1/etc/hosts.allow"));
        assert!(matches("*.conf", "/1/etc/nginx/nginx.conf"));
        assert!(matches("etc/*.conf", "/1/etc/resolv.conf"));
        assert!(!matches("etc/*.conf", "/1/etc/nginx/nginx.conf"));
        assert!(matches("etc/**/*.conf", "/1/etc/nginx/nginx.conf"));
        assert!(matches("/1/etc/hosts", "/1/etc/hosts"));
        assert!(!matches("/1/etc/hosts", "/2/etc/hosts"));
        assert!(matches("/*/etc/hosts", "/2/etc/hosts"));
        let query = FindQuery {
            pattern: "BOOTX64.EFI".into(),
            ignore_case: true,
            ..FindQuery::default()
        };
        assert!(matcher(&query).unwrap().is_match("/1/EFI/BOOT/bootx64.efi"));
        assert!(matcher(&FindQuery::default()).is_err());
        let bad = FindQuery {
            pattern: "[a".into(),
            ..FindQuery::default()
        };
        assert!(matcher(&bad).is_err());
    }
}
