//! A fake EBS direct API endpoint (and the one EC2 call a restore waits on), in memory.
//!
//! Paths, query parameters, headers and JSON fields are those of the AWS EBS REST API as
//! aws-sdk-ebs serialises them (`GET /snapshots/{SnapshotId}/blocks?maxResults&pageToken&
//! startingBlockIndex`, `GET /snapshots/{SnapshotId}/blocks/{BlockIndex}?blockToken`,
//! `POST /snapshots` (201), `PUT /snapshots/{SnapshotId}/blocks/{BlockIndex}` (201),
//! `POST /snapshots/completion/{SnapshotId}` (202)). Every request waits `latency` before it
//! is answered; `GetSnapshotBlock` and `PutSnapshotBlock` draw on a token bucket per snapshot
//! (`rate` per second, `burst` deep) and are refused, when it is empty, as EBS refuses them:
//! HTTP 400 with `x-amzn-ErrorType: RequestThrottledException` (the code the SDK's retry
//! classifier treats as throttling).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const BLOCK: usize = 512 * 1024;
pub const SOURCE: &str = "snap-0000000000000000a";

#[derive(Clone, Debug)]
pub struct Options {
    pub port: u16,
    pub latency: Duration,
    pub blocks: usize,
    pub rate: f64,
    pub burst: f64,
    pub verify_puts: bool,
    /// Serve the snapshot from this disk image: its non-zero 512 KiB blocks, not generated data.
    pub image: Option<std::path::PathBuf>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Snap {
    volume_gib: i64,
    /// Checksums of the blocks written (a new snapshot) or held (the source).
    sums: Mutex<HashMap<u64, String>>,
    status: Mutex<String>,
    bucket: Mutex<Bucket>,
}

#[derive(Default)]
struct Counters {
    list: AtomicU64,
    get: AtomicU64,
    put: AtomicU64,
    start: AtomicU64,
    complete: AtomicU64,
    ec2: AtomicU64,
    throttled_get: AtomicU64,
    throttled_put: AtomicU64,
    bad_put: AtomicU64,
}

struct Server {
    opts: Options,
    /// The source snapshot's written blocks: index -> (data, checksum).
    source: BTreeMap<u64, (Bytes, String)>,
    snaps: RwLock<HashMap<String, Arc<Snap>>>,
    next: AtomicU64,
    n: Counters,
}

type S = Arc<Server>;

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// CPU seconds (user + system) of this process, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are 12 and 13 after the command name.
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Deterministic pseudo-random data: xorshift64*, seeded per block.
fn generate(blocks: usize) -> Vec<u8> {
    let mut data = vec![0u8; blocks * BLOCK];
    for (i, block) in data.chunks_mut(BLOCK).enumerate() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x2545_F491_4F6C_DD1D);
        for w in block.chunks_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
    }
    data
}

fn sum(data: &[u8]) -> String {
    BASE64.encode(Sha256::digest(data))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", code), ("content-type", "application/json")],
        serde_json::json!({ "Message": message }).to_string(),
    )
        .into_response()
}

fn throttled() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("x-amzn-ErrorType", "RequestThrottledException"),
            ("content-type", "application/json"),
        ],
        r#"{"Message":"Rate exceeded for the snapshot","Reason":"RESOURCE_LEVEL_THROTTLE"}"#,
    )
        .into_response()
}

impl Server {
    fn snap(&self, id: &str) -> Option<Arc<Snap>> {
        self.snaps.read().unwrap().get(id).cloned()
    }

    /// Takes a token of the snapshot's bucket, or says it is empty.
    fn admit(&self, snap: &Snap) -> bool {
        let mut b = snap.bucket.lock().unwrap();
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * self.opts.rate).min(self.opts.burst);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn new_snap(volume_gib: i64, burst: f64) -> Snap {
    Snap {
        volume_gib,
        sums: Mutex::new(HashMap::new()),
        status: Mutex::new("pending".into()),
        bucket: Mutex::new(Bucket {
            tokens: burst,
            last: Instant::now(),
        }),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "startingBlockIndex")]
    starting_block_index: Option<usize>,
}

async fn list_blocks(State(s): State<S>, Path(id): Path<String>, Query(q): Query<ListQuery>) -> Response {
    s.n.list.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(s.opts.latency).await;
    let Some(snap) = s.snap(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "no such snapshot",
        );
    };
    let mut indexes: Vec<u64> = snap.sums.lock().unwrap().keys().copied().collect();
    indexes.sort_unstable();
    let from = q
        .page_token
        .and_then(|t| t.parse::<usize>().ok())
        .or(q.starting_block_index)
        .unwrap_or(0);
    let max = q.max_results.unwrap_or(10_000).clamp(100, 10_000);
    let page: Vec<u64> = indexes
        .iter()
        .copied()
        .filter(|i| *i as usize >= from)
        .take(max)
        .collect();
    let next = page
        .last()
        .map(|l| *l as usize + 1)
        .filter(|n| indexes.iter().any(|i| *i as usize >= *n));
    let mut body = serde_json::json!({
        "Blocks": page.iter().map(|i| serde_json::json!({"BlockIndex": i, "BlockToken": format!("t{i}")})).collect::<Vec<_>>(),
        "BlockSize": BLOCK,
        "ExpiryTime": now_secs() + 3600.0,
        "VolumeSize": snap.volume_gib,
    });
    if let Some(n) = next {
        body["NextToken"] = serde_json::Value::String(n.to_string());
    }
    ([("content-type", "application/json")], body.to_string()).into_response()
}

#[derive(Deserialize)]
struct GetQuery {
    #[serde(rename = "blockToken")]
    block_token: String,
}

async fn get_block(
    State(s): State<S>,
    Path((id, index)): Path<(String, u64)>,
    Query(q): Query<GetQuery>,
) -> Response {
    s.n.get.fetch_add(1, Ordering::Relaxed);
    let snap = s.snap(&id);
    let admitted = snap.as_ref().is_some_and(|sn| s.admit(sn));
    tokio::time::sleep(s.opts.latency).await;
    let Some(_snap) = snap else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "no such snapshot",
        );
    };
    if !admitted {
        s.n.throttled_get.fetch_add(1, Ordering::Relaxed);
        return throttled();
    }
    let block = s
        .source
        .get(&index)
        .filter(|_| id == SOURCE && q.block_token == format!("t{index}"));
    let Some((data, checksum)) = block else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "bad block index or token",
        );
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("x-amz-Data-Length", BLOCK.to_string())
        .header("x-amz-Checksum", checksum.as_str())
        .header("x-amz-Checksum-Algorithm", "SHA256")
        .body(Body::from(data.clone()))
        .unwrap()
}

async fn put_block(
    State(s): State<S>,
    Path((id, index)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.n.put.fetch_add(1, Ordering::Relaxed);
    let snap = s.snap(&id);
    let admitted = snap.as_ref().is_some_and(|sn| s.admit(sn));
    tokio::time::sleep(s.opts.latency).await;
    let Some(snap) = snap else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "no such snapshot",
        );
    };
    if !admitted {
        s.n.throttled_put.fetch_add(1, Ordering::Relaxed);
        return throttled();
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let checksum = h("x-amz-Checksum");
    let length: usize = h("x-amz-Data-Length").parse().unwrap_or(0);
    if length != BLOCK || body.len() != BLOCK || h("x-amz-Checksum-Algorithm") != "SHA256" {
        s.n.bad_put.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "bad length or algorithm",
        );
    }
    if index as i64 >= snap.volume_gib * 2048 {
        s.n.bad_put.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "block index past the volume",
        );
    }
    // The checksum sent must be the source block's: the benchmark writes back what it read.
    let expected = s.source.get(&index).map(|(_, c)| c);
    if expected != Some(&checksum) || (s.opts.verify_puts && sum(&body) != checksum) {
        s.n.bad_put.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "checksum does not match the data",
        );
    }
    snap.sums.lock().unwrap().insert(index, checksum.clone());
    Response::builder()
        .status(StatusCode::CREATED)
        .header("x-amz-Checksum", checksum)
        .header("x-amz-Checksum-Algorithm", "SHA256")
        .body(Body::empty())
        .unwrap()
}

async fn start_snapshot(State(s): State<S>, body: Bytes) -> Response {
    s.n.start.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(s.opts.latency).await;
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(volume) = req["VolumeSize"].as_i64() else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "VolumeSize is required",
        );
    };
    let id = format!("snap-{:017x}", 0x100 + s.next.fetch_add(1, Ordering::Relaxed));
    s.snaps
        .write()
        .unwrap()
        .insert(id.clone(), Arc::new(new_snap(volume, s.opts.burst)));
    let mut out = serde_json::json!({
        "SnapshotId": id, "OwnerId": "123456789012", "Status": "pending",
        "StartTime": now_secs(), "VolumeSize": volume, "BlockSize": BLOCK,
    });
    for field in ["Tags", "Description"] {
        if !req[field].is_null() {
            out[field] = req[field].clone();
        }
    }
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        out.to_string(),
    )
        .into_response()
}

async fn complete_snapshot(State(s): State<S>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    s.n.complete.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(s.opts.latency).await;
    let Some(snap) = s.snap(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "no such snapshot",
        );
    };
    let count: usize = headers
        .get("x-amz-ChangedBlocksCount")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let written = snap.sums.lock().unwrap().len();
    let status = if count == written { "completed" } else { "error" };
    *snap.status.lock().unwrap() = status.into();
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        format!(r#"{{"Status":"{status}"}}"#),
    )
        .into_response()
}

/// EC2's query protocol, for the only calls a restore makes: DescribeSnapshots (and
/// DeleteSnapshot when one fails).
async fn ec2(State(s): State<S>, body: String) -> Response {
    s.n.ec2.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(s.opts.latency).await;
    let form: Vec<(String, String)> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let action = form
        .iter()
        .find(|(k, _)| k == "Action")
        .map_or("", |(_, v)| v.as_str());
    let xml = |inner: String| {
        (
            [("content-type", "text/xml;charset=UTF-8")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>bench</requestId>{inner}</{action}Response>"#
            ),
        )
            .into_response()
    };
    match action {
        "DescribeSnapshots" => {
            let mut items = String::new();
            for (_, id) in form.iter().filter(|(k, _)| k.starts_with("SnapshotId.")) {
                if let Some(snap) = s.snap(id) {
                    let status = snap.status.lock().unwrap().clone();
                    items += &format!(
                        "<item><snapshotId>{id}</snapshotId><volumeId>vol-ffffffff</volumeId><status>{status}</status>\
                         <startTime>2026-01-01T00:00:00.000Z</startTime><progress>100%</progress><ownerId>123456789012</ownerId>\
                         <volumeSize>{}</volumeSize><encrypted>false</encrypted></item>",
                        snap.volume_gib
                    );
                }
            }
            xml(format!("<snapshotSet>{items}</snapshotSet>"))
        }
        "DeleteSnapshot" => xml("<return>true</return>".into()),
        _ => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "not in the fake endpoint",
        ),
    }
}

async fn stats(State(s): State<S>) -> Response {
    let n = &s.n;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "list": l(&n.list), "get": l(&n.get), "put": l(&n.put), "start": l(&n.start),
        "complete": l(&n.complete), "ec2": l(&n.ec2), "throttled_get": l(&n.throttled_get),
        "throttled_put": l(&n.throttled_put), "bad_put": l(&n.bad_put), "cpu": cpu_seconds(),
        "source_blocks": s.source.len(),
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// The non-zero 512 KiB blocks of a disk image (holes skipped with SEEK_DATA/SEEK_HOLE, data
/// regions read and all-zero blocks dropped), and the image's size in GiB (rounded up).
fn read_image(path: &std::path::Path) -> (BTreeMap<u64, Bytes>, i64) {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let size = file.metadata().unwrap().len();
    let fd = file.as_raw_fd();
    let mut blocks = BTreeMap::new();
    let mut buf = vec![0u8; BLOCK];
    let mut at: i64 = 0;
    while (at as u64) < size {
        // SAFETY: lseek on an open descriptor; -1 (ENXIO) means no data after `at`.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let hole = if hole < 0 { size as i64 } else { hole };
        let mut i = data as u64 / BLOCK as u64;
        while i * (BLOCK as u64) < hole as u64 {
            let off = i * BLOCK as u64;
            let n = (size - off).min(BLOCK as u64) as usize;
            buf.fill(0);
            file.read_exact_at(&mut buf[..n], off).unwrap();
            if buf.iter().any(|b| *b != 0) {
                blocks.insert(i, Bytes::copy_from_slice(&buf));
            }
            i += 1;
        }
        at = (i * BLOCK as u64) as i64;
    }
    (blocks, size.div_ceil(1 << 30) as i64)
}

pub fn serve(opts: Options) {
    let t = Instant::now();
    let (blocks, volume_gib): (BTreeMap<u64, Bytes>, i64) = match &opts.image {
        Some(path) => {
            let (blocks, gib) = read_image(path);
            eprintln!(
                "server: {}: {} non-zero blocks of 512 KiB ({} MiB) of {gib} GiB, read in {:.1?}",
                path.display(),
                blocks.len(),
                blocks.len() / 2,
                t.elapsed()
            );
            (blocks, gib)
        }
        None => {
            assert!(
                opts.blocks > 0 && opts.blocks % 2048 == 0,
                "--blocks must be a multiple of 2048 (whole GiB)"
            );
            let data = Bytes::from(generate(opts.blocks));
            let blocks = (0..opts.blocks)
                .map(|i| (i as u64, data.slice(i * BLOCK..(i + 1) * BLOCK)))
                .collect();
            eprintln!("server: {} blocks generated in {:.1?}", opts.blocks, t.elapsed());
            (blocks, (opts.blocks / 2048) as i64)
        }
    };
    let t = Instant::now();
    let source_blocks: BTreeMap<u64, (Bytes, String)> = blocks
        .into_iter()
        .map(|(i, d)| {
            let c = sum(&d);
            (i, (d, c))
        })
        .collect();
    eprintln!(
        "server: {} blocks hashed in {:.1?}",
        source_blocks.len(),
        t.elapsed()
    );
    let source = new_snap(volume_gib, opts.burst);
    *source.status.lock().unwrap() = "completed".into();
    source
        .sums
        .lock()
        .unwrap()
        .extend(source_blocks.iter().map(|(i, (_, c))| (*i, c.clone())));
    let server = Arc::new(Server {
        opts: opts.clone(),
        source: source_blocks,
        snaps: RwLock::new(HashMap::from([(SOURCE.to_owned(), Arc::new(source))])),
        next: AtomicU64::new(0),
        n: Counters::default(),
    });
    let app = Router::new()
        .route("/", post(ec2))
        .route("/_bench/stats", get(stats))
        .route("/snapshots", post(start_snapshot))
        .route("/snapshots/completion/{id}", post(complete_snapshot))
        .route("/snapshots/{id}/blocks", get(list_blocks))
        .route("/snapshots/{id}/blocks/{index}", get(get_block).put(put_block))
        .layer(axum::extract::DefaultBodyLimit::max(2 * BLOCK))
        .with_state(server);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-ebs")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .unwrap();
        println!("listening {}", listener.local_addr().unwrap().port());
        axum::serve(listener, app).await.unwrap();
    });
}
