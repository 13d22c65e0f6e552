//! `bulwark repo` and `bulwark image`: whole cycles through the binary, a backup killed at
//! random moments, and prune racing a running backup.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

/// A scratch directory with a repository path, a password file and images.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bulwark-cli-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        secret_file(&dir.join("pw"), "correct horse battery staple\n");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
    /// Repository arguments.
    fn repo(&self) -> Vec<String> {
        vec![
            "--repo".into(),
            self.path("repo"),
            "--password-file".into(),
            self.path("pw"),
        ]
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend(self.repo());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        bulwark(&refs)
    }
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }
    /// Runs a command that succeeds and prints JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }
    /// Backs up `image(seed, mib)` as a point of vol-1; the backup's JSON result.
    fn backup(&self, seed: u64, mib: usize) -> Value {
        std::fs::write(self.path("vol.img"), image(seed, mib)).unwrap();
        let source = self.path("vol.img");
        self.json(&[
            "image",
            "backup",
            "--source",
            &source,
            "--volume-id",
            "vol-1",
            "--json",
        ])
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic bytes: half random-like, half text, with zero stretches.
fn image(seed: u64, mib: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(mib << 20);
    for block in 0..mib * 2 {
        match block % 4 {
            0 => out.extend(std::iter::repeat_n(0u8, 512 * 1024)),
            1 => out.extend(
                b"2026-11-21 INFO request served in 3 ms\n"
                    .iter()
                    .cycle()
                    .take(512 * 1024),
            ),
            _ => out.extend((0..512 * 1024).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })),
        }
    }
    out
}

fn points(s: &Scratch) -> Vec<Value> {
    let out = s.ok(&["image", "list", "--json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn restore_matches(s: &Scratch, point: &str, expected: &[u8]) {
    let target = s.path(&format!("restore-{}.img", &point[..8]));
    s.ok(&["image", "restore", "--point", point, "--target", &target]);
    assert!(
        std::fs::read(&target).unwrap() == expected,
        "restore of {point} differs from its source"
    );
    std::fs::remove_file(target).unwrap();
}

#[test]
fn backup_list_restore_verify_through_the_binary() {
    let s = Scratch::new("cycle");
    s.ok(&["repo", "init"]);
    let result = s.backup(1, 8);
    let stats = &result["manifest"]["stats"];
    assert_eq!(stats["blocks_read"], 16);
    assert_eq!(stats["blocks_zero"], 4);
    let (code, _, stderr) = s.run(&[
        "image",
        "backup",
        "--source",
        &s.path("vol.img"),
        "--volume-id",
        "vol-1",
    ]);
    assert_eq!(code, 0);
    assert!(stderr.is_empty(), "no progress bar on a pipe: {stderr}");

    let list = points(&s);
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[1]["stats"]["blocks_new"], 0,
        "the second backup stores nothing new"
    );
    restore_matches(&s, list[0]["id"].as_str().unwrap(), &image(1, 8));
    let verify = s.json(&["image", "verify", "--read-data", "--json"]);
    assert_eq!(verify["clean"], true);

    let text = s.ok(&["image", "list"]);
    assert!(
        text.contains("vol-1") && text.contains("2 restore points"),
        "{text}"
    );
}

#[test]
fn wrong_or_missing_secrets_are_clear_errors() {
    let s = Scratch::new("secrets");
    s.ok(&["repo", "init"]);
    secret_file(Path::new(&s.path("wrong")), "not it\n");
    let (code, _, err) = bulwark(&[
        "image",
        "list",
        "--repo",
        &s.path("repo"),
        "--password-file",
        &s.path("wrong"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("wrong passphrase or key file"), "{err}");
    let (code, _, err) = bulwark(&["image", "list", "--repo", &s.path("repo")]);
    assert_eq!(code, 1);
    assert!(err.contains("--password-file"), "{err}");
    // A secret others may read is refused, with the command that fixes it.
    std::fs::write(s.path("open"), "correct horse battery staple\n").unwrap();
    std::fs::set_permissions(s.path("open"), std::fs::Permissions::from_mode(0o644)).unwrap();
    for option in ["--password-file", "--key-file"] {
        let (code, _, err) = bulwark(&[
            "image",
            "list",
            "--repo",
            &s.path("repo"),
            option,
            &s.path("open"),
        ]);
        assert_eq!(code, 1);
        assert!(
            err.contains("may be read by others than its owner (mode 0644)")
                && err.contains(&format!("chmod 600 {}", s.path("open"))),
            "{err}"
        );
    }
    let (code, _, err) = bulwark(&[
        "image",
        "list",
        "--repo",
        &s.path("nowhere"),
        "--password-file",
        &s.path("pw"),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no repository") && err.contains("repo init"),
        "{err}"
    );
    let (code, _, err) = bulwark(&["repo", "init", "--repo", &s.path("repo2")]);
    assert_eq!(code, 1);
    assert!(err.contains("--no-encryption"), "{err}");
}

#[test]
fn forget_needs_a_policy_and_changed_block_lists_are_checked() {
    let s = Scratch::new("inputs");
    s.ok(&["repo", "init"]);
    let (code, _, err) = s.run(&["image", "forget"]);
    assert_eq!(code, 1);
    assert!(err.contains("--keep"), "{err}");
    std::fs::write(s.path("vol.img"), image(2, 2)).unwrap();
    s.ok(&[
        "image",
        "backup",
        "--source",
        &s.path("vol.img"),
        "--volume-id",
        "v",
    ]);
    std::fs::write(s.path("changes"), "1\nthree\n").unwrap();
    let (code, _, err) = s.run(&[
        "image",
        "backup",
        "--source",
        &s.path("vol.img"),
        "--volume-id",
        "v",
        "--changed-blocks",
        &s.path("changes"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("line 2") && err.contains("three"), "{err}");
}

/// A backup killed with SIGKILL at random moments, many times: every earlier restore point
/// stays restorable bit for bit, verify stays clean, and the next backup succeeds.
#[test]
fn a_backup_killed_at_any_moment_loses_nothing() {
    let s = Scratch::new("kill");
    s.ok(&["repo", "init"]);
    let first = image(3, 4);
    std::fs::write(s.path("vol.img"), &first).unwrap();
    s.ok(&[
        "image",
        "backup",
        "--source",
        &s.path("vol.img"),
        "--volume-id",
        "vol-1",
    ]);
    let first_point = points(&s)[0]["id"].as_str().unwrap().to_owned();

    // A bigger, different image for the backups to be killed.
    std::fs::write(s.path("big.img"), image(4, 48)).unwrap();
    let started = Instant::now();
    s.ok(&[
        "image",
        "backup",
        "--source",
        &s.path("big.img"),
        "--volume-id",
        "vol-2",
        "--threads",
        "2",
    ]);
    let full = started.elapsed();

    // Kills at random moments until twelve backups were killed while running; a backup that
    // finished before its kill halves the window (the machine may be faster than the first
    // backup suggested), so the test does not depend on the machine's speed.
    let mut seed = 12345u64;
    let mut killed = 0;
    let mut window = full.as_micros() as u64;
    for round in 0..60 {
        if killed == 12 {
            break;
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let delay = Duration::from_micros(seed % window.max(1));
        let mut args: Vec<String> = [
            "image",
            "backup",
            "--source",
            &s.path("big.img"),
            "--volume-id",
            &format!("vol-k{round}"),
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(s.repo());
        let mut child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            window /= 2;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        let verify: Value = serde_json::from_str(&s.ok(&["image", "verify", "--json"])).unwrap();
        assert_eq!(verify["clean"], true, "round {round}: {verify}");
        restore_matches(&s, &first_point, &first);
    }
    assert_eq!(killed, 12, "twelve backups are killed while they run");
    let verify: Value = serde_json::from_str(&s.ok(&["image", "verify", "--read-data", "--json"])).unwrap();
    assert_eq!(verify["clean"], true, "{verify}");
    // Leftover locks of killed processes do not block the next shared lock; the next backup works.
    std::fs::write(s.path("vol.img"), image(5, 4)).unwrap();
    s.ok(&[
        "image",
        "backup",
        "--source",
        &s.path("vol.img"),
        "--volume-id",
        "vol-1",
    ]);
    let latest = points(&s)
        .iter()
        .rev()
        .find(|p| p["volume_id"] == "vol-1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    restore_matches(&s, &latest, &image(5, 4));
}

/// Prune while a backup runs: prune refuses (the backup holds a shared lock), and the
/// backup's restore point is complete afterwards.
#[test]
fn prune_never_runs_beside_a_backup() {
    let s = Scratch::new("prune-race");
    s.ok(&["repo", "init"]);
    let data = image(6, 64);
    std::fs::write(s.path("big.img"), &data).unwrap();
    let mut args: Vec<String> = [
        "image",
        "backup",
        "--source",
        &s.path("big.img"),
        "--volume-id",
        "vol-1",
        "--threads",
        "1",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(s.repo());
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(&args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let locks = std::path::Path::new(&s.path("repo")).join("locks");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&locks).map_or(0, Iterator::count) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, _, err) = s.run(&["image", "prune"]);
    let backup_still_running = child.try_wait().unwrap().is_none();
    assert!(child.wait().unwrap().success());
    if backup_still_running {
        assert_eq!(code, 1, "prune must refuse while a backup runs");
        assert!(err.contains("locked"), "{err}");
    }
    let point = points(&s)[0]["id"].as_str().unwrap().to_owned();
    restore_matches(&s, &point, &data);
    s.ok(&["image", "prune"]);
    restore_matches(&s, &point, &data);
}

/// The moto endpoint `scripts/test` starts; `None` (with a note) when run outside it, except
/// in CI, where a missing moto is a failure.
fn s3_endpoint() -> Option<String> {
    match std::env::var("BULWARK_TEST_S3_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("BULWARK_TEST_S3_ENDPOINT is unset: scripts/test starts moto")
        }
        Err(_) => {
            eprintln!("skipped: BULWARK_TEST_S3_ENDPOINT is unset (run scripts/test, which starts moto)");
            None
        }
    }
}

/// Creates a bucket on moto with a bare path-style PUT (moto does not check signatures).
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn an_s3_repository_through_the_binary() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = format!("bulwark-cli-{}", std::process::id());
    create_bucket(&endpoint, &bucket);
    let s = Scratch::new("s3");
    std::fs::write(s.path("vol.img"), image(7, 40)).unwrap();
    let url = format!("s3://{bucket}/backups/ec2");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        let pw = s.path("pw");
        all.extend([
            "--repo",
            &url,
            "--password-file",
            &pw,
            "--endpoint-url",
            &endpoint,
        ]);
        let (code, out, err) = bulwark(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    run(&["repo", "init"]);
    run(&[
        "image",
        "backup",
        "--source",
        &s.path("vol.img"),
        "--volume-id",
        "vol-1",
    ]);
    let list: Value = serde_json::from_str(&run(&["image", "list", "--json"])).unwrap();
    let point = list[0]["id"].as_str().unwrap().to_owned();
    let target = s.path("restored.img");
    run(&["image", "restore", "--point", &point, "--target", &target]);
    assert!(
        std::fs::read(&target).unwrap() == image(7, 40),
        "the S3 restore differs from the source"
    );
    let verify: Value = serde_json::from_str(&run(&["image", "verify", "--read-data", "--json"])).unwrap();
    assert_eq!(verify["clean"], true, "{verify}");
    assert!(
        verify["packs"].as_u64().unwrap() >= 2,
        "40 MiB with random data spans several packs: {verify}"
    );
}

#[test]
fn repo_init_takes_an_object_lock_mode_and_days() {
    let s = Scratch::new("lock-args");
    let (code, _, err) = s.run(&["repo", "init", "--object-lock", "governance"]);
    assert_eq!(code, EXIT_INPUT, "a mode needs its days: {err}");
    assert!(err.contains("--lock-days"), "{err}");
    let (code, _, err) = s.run(&["repo", "init", "--object-lock", "forever", "--lock-days", "3"]);
    assert_eq!(code, EXIT_INPUT, "{err}");
    assert!(err.contains("governance") && err.contains("compliance"), "{err}");
    let (code, _, err) = s.run(&["repo", "init", "--object-lock", "compliance", "--lock-days", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("0 days"), "{err}");

    // A directory emulates Object Lock (docs/repository-format.md).
    let out = s.ok(&["repo", "init", "--object-lock", "compliance", "--lock-days", "30"]);
    assert!(
        out.contains("Object Lock (compliance)") && out.contains("30 days"),
        "{out}"
    );
}

/// forget keeps a point Object Lock retains and says until when; prune keeps the retained
/// files and says when the first becomes deletable; verify counts them locked and intact.
#[test]
fn retained_points_and_files_are_kept_and_shown() {
    let s = Scratch::new("lock");
    s.ok(&["repo", "init", "--object-lock", "governance", "--lock-days", "30"]);
    let first = s.backup(1, 2)["point"].as_str().unwrap().to_owned();
    s.backup(2, 2);

    let out = s.ok(&["image", "forget", "--keep-last", "1"]);
    assert!(
        out.contains(&format!("keep   {}", &first[..8])) && out.contains("retained by Object Lock until"),
        "{out}"
    );
    assert!(out.contains("2 kept, 0 removed"), "{out}");
    assert_eq!(points(&s).len(), 2);

    let out = s.ok(&["image", "prune"]);
    assert!(
        out.contains(" kept: retained by Object Lock, deletable "),
        "{out}"
    );
    let plan = s.json(&["image", "prune", "--json"]);
    let retained = plan["retained"].as_array().unwrap();
    assert!(!retained.is_empty(), "{plan}");
    assert!(
        retained.iter().all(|r| r["deletable_after"].is_string()),
        "{plan}"
    );

    let out = s.ok(&["image", "verify"]);
    assert!(
        out.contains("locked and intact: retained by Object Lock") && out.contains("0 missing, 0 damaged"),
        "{out}"
    );
    let report = s.json(&["image", "verify", "--json"]);
    let objects = report["objects"].as_object().unwrap();
    let point = &objects[&format!("points/{first}")];
    assert_eq!(point["state"], "intact", "{report}");
    assert!(point["retained_until"].is_string(), "{report}");
}

/// verify names each object's state: a pack deleted behind the repository's back is missing.
#[test]
fn verify_reports_each_objects_state() {
    let s = Scratch::new("states");
    s.ok(&["repo", "init"]);
    s.backup(3, 2);
    let report = s.json(&["image", "verify", "--json"]);
    let objects = report["objects"].as_object().unwrap();
    let (pack, state) = objects
        .iter()
        .find(|(path, _)| path.starts_with("data/"))
        .unwrap();
    assert_eq!(state["state"], "intact");
    assert!(state["retained_until"].is_null(), "no Object Lock: {state}");

    std::fs::remove_file(s.0.join("repo").join(pack)).unwrap();
    let (code, out, _) = s.run(&["image", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 missing"), "{out}");
    let (code, out, _) = s.run(&["image", "verify", "--json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["objects"][pack]["state"], "missing", "{report}");
}

/// A file that is not the repository's is skipped with a warning on stderr, never fatal; the
/// JSON result carries it too.
#[test]
fn stray_files_are_warnings() {
    let s = Scratch::new("stray");
    s.ok(&["repo", "init"]);
    s.backup(4, 2);
    // Backups read the index files, list and forget the restore points, verify and prune both.
    std::fs::write(s.0.join("repo/points/notes.txt"), "not a restore point").unwrap();
    std::fs::write(s.0.join("repo/index/notes.txt"), "not an index file").unwrap();
    let expected = "/notes.txt: not a file of the repository";

    std::fs::write(s.path("vol.img"), image(5, 2)).unwrap();
    for args in [
        &[
            "image",
            "backup",
            "--source",
            &s.path("vol.img"),
            "--volume-id",
            "vol-1",
        ][..],
        &["image", "list"],
        &["image", "verify"],
        &["image", "forget", "--keep-last", "5"],
        &["image", "prune"],
    ] {
        let (code, _, err) = s.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            err.starts_with("warning: ") && err.contains(expected),
            "{args:?}: {err}"
        );
    }
    let report = s.json(&["image", "verify", "--json"]);
    assert_eq!(report["clean"], true, "a stray file is no damage: {report}");
    let warnings = report["warnings"].as_array().unwrap();
    for stray in ["index/notes.txt", "points/notes.txt"] {
        assert!(
            warnings.iter().any(|w| w.as_str().unwrap().contains(stray)),
            "{stray}: {report}"
        );
    }
}

/// Writes a secret file readable by its owner only, as the CLI requires.
fn secret_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
