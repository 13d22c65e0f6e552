//! Bulwark's EBS direct API backup (`backup_snapshot`) and restore (`restore_to_snapshot`)
//! next to coldsnap's download and upload, against a fake EBS endpoint on this machine that
//! answers after `--latency-ms` and throttles at `--rate` requests per second per snapshot.
//!
//! `cargo run --release -- [--latency-ms 25] [--blocks 4096] [--runs 3] [--rate 1000]
//! [--burst 100] [--work-dir /dev/shm/bulwark-bench] [--only bulwark|coldsnap] [--verify-puts]`
//!
//! `--files IMAGE [--list-dir /1/many] [--file /1/big.bin]`: file-level recovery instead. The
//! server serves the snapshot from a disk image (its non-zero 512 KiB blocks only); each run
//! backs it up with `backup_snapshot` (the reference read speed), then, each on a fresh
//! `SnapshotDevice` (cold cache), (a) opens it and lists `/` and `/1/`, (b) lists `--list-dir`,
//! (c) reads `--file` to its end.
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
use bulwark_repo::{Repository, Secret};
use bulwark_storage::LocalBackend;
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
    image: Option<PathBuf>,
    list_dir: String,
    file: String,
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
        image: None,
        list_dir: "/1/many".into(),
        file: "/1/big.bin".into(),
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
            "--files" => a.image = Some(val().into()),
            "--list-dir" => a.list_dir = val(),
            "--file" => a.file = val(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

#[derive(Clone, Copy, Default, Debug)]
struct Stats {
    list: u64,
    source_blocks: u64,
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
        list: v["list"].as_u64().unwrap(),
        source_blocks: v["source_blocks"].as_u64().unwrap(),
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
            image: a.image.clone(),
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
        .args([
            "serve",
            "--port",
            &a.port.to_string(),
            "--latency-ms",
            &a.latency_ms.to_string(),
        ])
        .args([
            "--blocks",
            &a.blocks.to_string(),
            "--rate",
            &a.rate.to_string(),
            "--burst",
            &a.burst.to_string(),
        ])
        .args(a.verify_puts.then_some("--verify-puts"))
        .args(
            a.image
                .iter()
                .flat_map(|i| ["--files".into(), i.clone().into_os_string()]),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server_pid = child.id();
    let _child = KillOnDrop(child);
    let port: u16 = line.trim().strip_prefix("listening ").unwrap().parse().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    eprintln!("driver: fake EBS at {endpoint} (pid {server_pid})");

    let bytes = if a.image.is_some() {
        server_stats(&endpoint).source_blocks * BLOCK as u64
    } else {
        (a.blocks * BLOCK) as u64
    };
    std::fs::create_dir_all(&a.work_dir).unwrap();

    // Bulwark, as the CLI builds it.
    // (Its I/O runtime as bulwark_s3::io_runtime builds it: 2 worker threads.)
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bulwark-io")
        .enable_all()
        .build()
        .unwrap();
    let aws = AwsCloud::new(
        AwsOptions {
            endpoint_url: Some(endpoint.clone()),
            worker_images: Default::default(),
        },
        io.handle().clone(),
    );
    let who = aws.appliance_credentials().unwrap();
    let cloud = bulwark_cloud::Cloud::of(Arc::new(aws));
    let region: Region = "us-east-1".parse().unwrap();
    let source: SnapshotId = SOURCE.parse().unwrap();

    if a.image.is_some() {
        files_mode(&a, &endpoint, &cloud, &who, &region, &source, bytes);
        let _ = std::fs::remove_dir_all(&a.work_dir);
        return;
    }

    // coldsnap, as its CLI builds its client (SDK retries off: coldsnap retries each block).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
                    &cloud,
                    &who,
                    &region,
                    &source,
                    None,
                    &repo,
                    "vol-bench",
                    &progress,
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
                    bulwark_engine::direct::restore_to_snapshot(
                        &cloud, &who, &region, &repo, &point, None, &progress,
                    )
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
                rt.block_on(down.download_to_file(SOURCE, &file, None, None, None))
                    .map_err(|e| e.to_string())
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
                format!(
                    "{} of {}: {}",
                    errors.len(),
                    ms.len(),
                    errors[0].lines().next().unwrap_or("")
                )
            }
        );
        for x in ms {
            if x.bad_put > 0 {
                println!(
                    "<!-- {name}: {} writes refused for a wrong checksum or length -->",
                    x.bad_put
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&a.work_dir);
}

/// One measured step of file-level recovery.
#[derive(Clone, Debug, Default)]
struct Phase {
    secs: f64,
    /// `Files::bytes_read` during the step (cache misses and read-ahead, zeros included).
    bytes_read: u64,
    /// GetSnapshotBlock and ListSnapshotBlocks calls the server saw.
    gets: u64,
    lists: u64,
    throttled: u64,
    client_cpu: f64,
    note: String,
    error: Option<String>,
}

fn phase(endpoint: &str, read: impl Fn() -> u64, f: impl FnOnce() -> Result<String, String>) -> Phase {
    let s0 = server_stats(endpoint);
    let b0 = read();
    let c0 = cpu_seconds();
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    let c1 = cpu_seconds();
    let s1 = server_stats(endpoint);
    let (note, error) = match r {
        Ok(n) => (n, None),
        Err(e) => (String::new(), Some(e)),
    };
    Phase {
        secs,
        bytes_read: read().saturating_sub(b0),
        gets: s1.get - s0.get,
        lists: s1.list - s0.list,
        throttled: s1.throttled - s0.throttled,
        client_cpu: c1 - c0,
        note,
        error,
    }
}

fn sum_phases(a: &Phase, b: &Phase) -> Phase {
    Phase {
        secs: a.secs + b.secs,
        bytes_read: a.bytes_read + b.bytes_read,
        gets: a.gets + b.gets,
        lists: a.lists + b.lists,
        throttled: a.throttled + b.throttled,
        client_cpu: a.client_cpu + b.client_cpu,
        note: b.note.clone(),
        error: a.error.clone().or(b.error.clone()),
    }
}

fn files_mode(
    a: &Args,
    endpoint: &str,
    cloud: &bulwark_cloud::Cloud,
    who: &bulwark_cloud::Credentials,
    region: &Region,
    source: &SnapshotId,
    bytes: u64,
) {
    use bulwark_engine::direct::SnapshotDevice;
    use bulwark_engine::files::Files;
    use std::cell::RefCell;

    let open = || -> Result<Files, String> {
        let dev = SnapshotDevice::open(cloud.clone(), who.clone(), region.clone(), source.clone())
            .map_err(|e| format!("SnapshotDevice::open: {e}"))?;
        let dev: Box<dyn bulwark_fs::Device> = Box::new(dev);
        Files::open_reading_ahead(
            dev,
            format!("snapshot {source}"),
            bulwark_engine::files::SNAPSHOT_READ_AHEAD,
        )
        .map_err(|e| format!("Files::open: {e}"))
    };
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut rows: Vec<(String, Phase, Option<(f64, f64)>)> = vec![];
    let mut backups: Vec<Measure> = vec![];
    for run in 1..=a.runs {
        // The reference: Bulwark's backup read of the same snapshot.
        let dir = a.work_dir.join(format!("repo-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Repository::init(Arc::new(LocalBackend::new(&dir)), &Secret::None).unwrap();
        let m = measure(endpoint, bytes, false, || {
            let progress = Progress::default();
            bulwark_engine::direct::backup_snapshot(
                cloud,
                who,
                region,
                source,
                None,
                &repo,
                "vol-bench",
                &progress,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        });
        eprintln!(
            "run {run}: bulwark read (backup_snapshot) {:.1} MiB/s {m:?}",
            m.mib_s()
        );
        let backup_mib_s = m.mib_s();
        backups.push(m);
        drop(repo);
        let _ = std::fs::remove_dir_all(&dir);

        // (a) open + ls / + ls /1/, cold.
        let files: RefCell<Option<Files>> = RefCell::new(None);
        let read = || files.borrow().as_ref().map_or(0, |f| f.bytes_read());
        let pa = phase(endpoint, read, || {
            let f = open()?;
            let root = f.list("/").map_err(|e| format!("ls /: {e}"))?;
            let one = f.list("/1/").map_err(|e| format!("ls /1/: {e}"))?;
            let parts: Vec<String> = root
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.name,
                        e.partition
                            .as_ref()
                            .and_then(|p| p.filesystem.clone())
                            .unwrap_or_default()
                    )
                })
                .collect();
            let note = format!(
                "/: {} ({}); /1/: {} entries",
                root.len(),
                parts.join(", "),
                one.len()
            );
            let b = f.bytes_read();
            *files.borrow_mut() = Some(f);
            Ok(format!("{note}; bytes_read {b}"))
        });
        // `read` saw 0 before the open: bytes_read is the whole of it.
        eprintln!("run {run}: (a) {pa:?}");
        rows.push((format!("run {run} (a) open + ls / + ls /1/"), pa, None));

        // (b) ls of the big directory, on a fresh device.
        *files.borrow_mut() = None;
        let po = phase(endpoint, read, || {
            let f = open()?;
            let b = f.bytes_read();
            *files.borrow_mut() = Some(f);
            Ok(format!("open only; bytes_read {b}"))
        });
        let po = Phase {
            bytes_read: files.borrow().as_ref().map_or(0, |f| f.bytes_read()),
            ..po
        };
        let pb = phase(endpoint, read, || {
            let f = files.borrow();
            let f = f.as_ref().ok_or("not open")?;
            let l = f
                .list(&a.list_dir)
                .map_err(|e| format!("ls {}: {e}", a.list_dir))?;
            Ok(format!("{}: {} entries", a.list_dir, l.len()))
        });
        eprintln!("run {run}: (b) open {po:?}\nrun {run}: (b) ls {pb:?}");
        rows.push((format!("run {run} (b) open"), po.clone(), None));
        rows.push((format!("run {run} (b) ls {}", a.list_dir), pb.clone(), None));
        rows.push((
            format!("run {run} (b) open + ls {}", a.list_dir),
            sum_phases(&po, &pb),
            None,
        ));

        // (c) read the big file to its end, on a fresh device.
        *files.borrow_mut() = None;
        let po = phase(endpoint, read, || {
            let f = open()?;
            *files.borrow_mut() = Some(f);
            Ok("open only".into())
        });
        let po = Phase {
            bytes_read: files.borrow().as_ref().map_or(0, |f| f.bytes_read()),
            ..po
        };
        let copied = std::cell::Cell::new(0u64);
        let pc = phase(endpoint, read, || {
            let f = files.borrow();
            let f = f.as_ref().ok_or("not open")?;
            let mut r = f
                .volume()
                .open_file(&a.file)
                .map_err(|e| format!("open {}: {e}", a.file))?;
            let n =
                std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| format!("read {}: {e}", a.file))?;
            copied.set(n);
            Ok(format!("{}: {n} bytes", a.file))
        });
        let c_mib_s = mib(copied.get()) / pc.secs;
        eprintln!("run {run}: (c) open {po:?}\nrun {run}: (c) read {pc:?} {c_mib_s:.1} MiB/s");
        rows.push((format!("run {run} (c) open"), po.clone(), None));
        rows.push((
            format!("run {run} (c) read {}", a.file),
            pc.clone(),
            Some((c_mib_s, c_mib_s / backup_mib_s)),
        ));
        let total = sum_phases(&po, &pc);
        let t_mib_s = mib(copied.get()) / total.secs;
        rows.push((
            format!("run {run} (c) open + read {}", a.file),
            total,
            Some((t_mib_s, t_mib_s / backup_mib_s)),
        ));
        *files.borrow_mut() = None;
    }

    println!(
        "\nSnapshot from {}: {} non-zero blocks of 512 KiB ({} MiB); latency {} ms per request; quota {} requests/s per snapshot (bucket {} deep); {} runs.\n",
        a.image.as_ref().unwrap().display(),
        bytes / BLOCK as u64,
        bytes >> 20,
        a.latency_ms,
        a.rate,
        a.burst,
        a.runs
    );
    println!(
        "| Bulwark read (backup_snapshot) | runs, MiB/s: {} | errors: {} |",
        backups
            .iter()
            .map(|m| format!(
                "{:.1} ({:.2} s, {} block calls, {} throttled)",
                m.mib_s(),
                m.secs,
                m.requests,
                m.throttled
            ))
            .collect::<Vec<_>>()
            .join("; "),
        backups
            .iter()
            .filter_map(|m| m.error.clone())
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("\n| step | time (s) | MiB read (bytes_read) | GetSnapshotBlock calls | ListSnapshotBlocks calls | throttled | client CPU (s) | MiB/s of file | % of backup read | note |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, p, frac) in &rows {
        let (speed, pct) = match frac {
            Some((speed, f)) => (format!("{speed:.1}"), format!("{:.0}%", 100.0 * f)),
            None => (String::new(), String::new()),
        };
        println!(
            "| {name} | {:.3} | {:.1} | {} | {} | {} | {:.2} | {speed} | {pct} | {}{} |",
            p.secs,
            mib(p.bytes_read),
            p.gets,
            p.lists,
            p.throttled,
            p.client_cpu,
            p.note,
            p.error
                .as_ref()
                .map(|e| format!(" ERROR: {e}"))
                .unwrap_or_default()
        );
    }
}
