//! Bulwark's EBS direct API backup (`backup_snapshot`) and restore (`restore_to_snapshot`)
//! next to coldsnap's download and upload, against a fake EBS endpoint on this machine that
//! answers after `--latency-ms` and throttles at `--rate` requests per second per snapshot.
//!
//! `cargo run --release -- [--latency-ms 25] [--blocks 4096] [--runs 3] [--rate 1000]
//! [--burst 100] [--work-dir /dev/shm/bulwark-bench] [--only bulwark|coldsnap] [--verify-puts]`
//!
//! The server runs as a child process (this binary, `serve`), so the CPU time of client and
//! server are measured apart.

mod server;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark_aws::{AwsCloud, AwsOptions};
use bulwark_model::{Region, SnapshotId};
use bulwark_mover::Progress;
use bulwark_repo::{LocalBackend, Repository, Secret};
use server::{cpu_seconds, BLOCK, SOURCE};

struct Args {
    latency_ms: u64,
    blocks: usize,
    runs: usize,
    rate: f64,
    burst: f64,
    work_dir: PathBuf,
    only: Option<String>,
    verify_puts: bool,
    port: u16,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        latency_ms: 25,
        blocks: 4096,
        runs: 3,
        rate: 1000.0,
        burst: 100.0,
        work_dir: PathBuf::from("/dev/shm/bulwark-bench"),
        only: None,
        verify_puts: false,
        port: 0,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--latency-ms" => a.latency_ms = val().parse().unwrap(),
            "--blocks" => a.blocks = val().parse().unwrap(),
            "--runs" => a.runs = val().parse().unwrap(),
            "--rate" => a.rate = val().parse().unwrap(),
            "--burst" => a.burst = val().parse().unwrap(),
            "--work-dir" => a.work_dir = val().into(),
            "--only" => a.only = Some(val()),
            "--port" => a.port = val().parse().unwrap(),
            "--verify-puts" => a.verify_puts = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

#[derive(Clone, Copy, Default, Debug)]
struct Stats {
    get: u64,
    put: u64,
    throttled: u64,
    bad_put: u64,
    cpu: f64,
}

fn server_stats(endpoint: &str) -> Stats {
    // A tiny HTTP/1.0 GET, so the driver needs no HTTP client of its own.
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /_bench/stats HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    Stats {
        get: v["get"].as_u64().unwrap(),
        put: v["put"].as_u64().unwrap(),
        throttled: v["throttled_get"].as_u64().unwrap() + v["throttled_put"].as_u64().unwrap(),
        bad_put: v["bad_put"].as_u64().unwrap(),
        cpu: v["cpu"].as_f64().unwrap(),
    }
}

#[derive(Clone, Debug)]
struct Measure {
    secs: f64,
    bytes: u64,
    requests: u64,
    throttled: u64,
    bad_put: u64,
    client_cpu: f64,
    server_cpu: f64,
    error: Option<String>,
}

impl Measure {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.secs
    }
}

/// Runs `f`, measuring wall time, CPU of both processes and the server's counters.
fn measure(endpoint: &str, bytes: u64, write: bool, f: impl FnOnce() -> Result<(), String>) -> Measure {
    let s0 = server_stats(endpoint);
    let c0 = cpu_seconds();
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    let c1 = cpu_seconds();
    let s1 = server_stats(endpoint);
    Measure {
        secs,
        bytes,
        requests: if write { s1.put - s0.put } else { s1.get - s0.get },
        throttled: s1.throttled - s0.throttled,
        bad_put: s1.bad_put - s0.bad_put,
        client_cpu: c1 - c0,
        server_cpu: s1.cpu - s0.cpu,
        error: r.err(),
    }
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("serve") {
        argv.next();
        let a = parse_args(argv);
        server::serve(server::Options {
            port: a.port,
            latency: Duration::from_millis(a.latency_ms),
            blocks: a.blocks,
            rate: a.rate,
            burst: a.burst,
            verify_puts: a.verify_puts,
        });
        return;
    }
    let a = parse_args(argv);
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }

    // The server.
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["serve", "--port", &a.port.to_string(), "--latency-ms", &a.latency_ms.to_string()])
        .args(["--blocks", &a.blocks.to_string(), "--rate", &a.rate.to_string(), "--burst", &a.burst.to_string()])
        .args(a.verify_puts.then_some("--verify-puts"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server_pid = child.id();
    let _child = KillOnDrop(child);
    let port: u16 = line.trim().strip_prefix("listening ").unwrap().parse().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    eprintln!("driver: fake EBS at {endpoint} (pid {server_pid})");

    let bytes = (a.blocks * BLOCK) as u64;
    std::fs::create_dir_all(&a.work_dir).unwrap();

    // Bulwark, as the CLI builds it.
    let cloud = AwsCloud::new(AwsOptions { endpoint_url: Some(endpoint.clone()), worker_images: Default::default() })
        .unwrap();
    let who = cloud.appliance_credentials().unwrap();
    let region: Region = "us-east-1".parse().unwrap();
    let source: SnapshotId = SOURCE.parse().unwrap();

    // coldsnap, as its CLI builds its client (SDK retries off: coldsnap retries each block).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let conf = rt.block_on(
        aws_config::from_env()
            .endpoint_url(&endpoint)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .read_timeout(Duration::from_secs(12))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(120))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .load(),
    );
    let ebs = aws_sdk_ebs::Client::new(&conf);

    let run_bulwark = a.only.as_deref() != Some("coldsnap");
    let run_coldsnap = a.only.as_deref() != Some("bulwark");
    let mut results: Vec<(&str, Vec<Measure>)> = vec![
        ("Bulwark read (backup_snapshot)", vec![]),
        ("Bulwark write (restore_to_snapshot)", vec![]),
        ("coldsnap read (download_to_file)", vec![]),
        ("coldsnap write (upload_from_file)", vec![]),
    ];
    for run in 1..=a.runs {
        if run_bulwark {
            let dir = a.work_dir.join(format!("repo-{run}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let repo = Repository::init(Arc::new(LocalBackend::new(&dir)), &Secret::None).unwrap();
            let mut point = None;
            let m = measure(&endpoint, bytes, false, || {
                let progress = Progress::default();
                let out = bulwark_engine::direct::backup_snapshot(
                    &cloud, &who, &region, &source, None, &repo, "vol-bench", &progress,
                )
                .map_err(|e| e.to_string())?;
                point = Some(out.id);
                Ok(())
            });
            eprintln!("run {run}: bulwark read {:.1} MiB/s {m:?}", m.mib_s());
            results[0].1.push(m);
            if let Some(point) = point {
                let m = measure(&endpoint, bytes, true, || {
                    let progress = Progress::default();
                    bulwark_engine::direct::restore_to_snapshot(&cloud, &who, &region, &repo, &point, None, &progress)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                eprintln!("run {run}: bulwark write {:.1} MiB/s {m:?}", m.mib_s());
                results[1].1.push(m);
            }
            drop(repo);
            let _ = std::fs::remove_dir_all(&dir);
        }
        if run_coldsnap {
            let file = a.work_dir.join(format!("coldsnap-{run}.img"));
            let _ = std::fs::remove_file(&file);
            let down = coldsnap::SnapshotDownloader::new(ebs.clone());
            let m = measure(&endpoint, bytes, false, || {
                rt.block_on(down.download_to_file(SOURCE, &file, None, None, None)).map_err(|e| e.to_string())
            });
            eprintln!("run {run}: coldsnap read {:.1} MiB/s {m:?}", m.mib_s());
            let ok = m.error.is_none();
            results[2].1.push(m);
            if ok {
                let up = coldsnap::SnapshotUploader::new(ebs.clone());
                let m = measure(&endpoint, bytes, true, || {
                    rt.block_on(up.upload_from_file(&file, None, None, None, None, None, None, None, None))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                eprintln!("run {run}: coldsnap write {:.1} MiB/s {m:?}", m.mib_s());
                results[3].1.push(m);
            }
            let _ = std::fs::remove_file(&file);
        }
    }

    // The report: the median run (by throughput) of each, as a Markdown table.
    let ceiling = a.rate * BLOCK as f64 / (1 << 20) as f64;
    println!(
        "\nSnapshot: {} blocks of 512 KiB ({} MiB); latency {} ms per request; quota {} requests/s per snapshot (bucket {} deep); ceiling {:.0} MiB/s; {} runs, median shown.\n",
        a.blocks,
        bytes >> 20,
        a.latency_ms,
        a.rate,
        a.burst,
        ceiling,
        a.runs
    );
    println!("| transfer | MiB/s (median) | runs, MiB/s | % of ceiling | block requests/s | throttled answers | client CPU (cores) | server CPU (cores) | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, ms) in &results {
        if ms.is_empty() {
            continue;
        }
        let mut sorted: Vec<&Measure> = ms.iter().collect();
        sorted.sort_by(|x, y| {
            let key = |m: &Measure| if m.error.is_some() { -1.0 } else { m.mib_s() };
            key(x).partial_cmp(&key(y)).unwrap()
        });
        let m = sorted[sorted.len() / 2];
        let all: Vec<String> = ms.iter().map(|m| format!("{:.0}", m.mib_s())).collect();
        let errors: Vec<String> = ms.iter().filter_map(|m| m.error.clone()).collect();
        println!(
            "| {name} | {:.1} | {} | {:.0}% | {:.0} | {} | {:.2} | {:.2} | {} |",
            m.mib_s(),
            all.join(", "),
            100.0 * m.mib_s() / ceiling,
            m.requests as f64 / m.secs,
            m.throttled,
            m.client_cpu / m.secs,
            m.server_cpu / m.secs,
            if errors.is_empty() {
                "none".to_owned()
            } else {
                format!("{} of {}: {}", errors.len(), ms.len(), errors[0].lines().next().unwrap_or(""))
            }
        );
        for x in ms {
            if x.bad_put > 0 {
                println!("<!-- {name}: {} writes refused for a wrong checksum or length -->", x.bad_put);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&a.work_dir);
}
