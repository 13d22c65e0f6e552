//! `bulwark embedded`, `run` and `recover`: sessions on an embedded cloud kept in a data
//! directory, across separate commands, including an appliance killed mid-session.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::support::*;

fn status(dir: &DataDir) -> String {
    let (code, stdout, stderr) = bulwark(&["embedded", "status", "--data-dir", dir.path()]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    stdout
}

fn init(dir: &DataDir, mib: &str) {
    let (code, stdout, stderr) = bulwark(&[
        "embedded",
        "init",
        "--estate",
        estate_path(),
        "--data-dir",
        dir.path(),
        "--data-mib",
        mib,
    ]);
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
}

#[test]
fn sessions_run_across_commands_on_one_embedded_cloud() {
    let dir = DataDir::new("across");
    init(&dir, "2");
    // A second init on the same directory is refused, and changes nothing.
    let (code, _, stderr) = bulwark(&[
        "embedded",
        "init",
        "--estate",
        estate_path(),
        "--data-dir",
        dir.path(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already holds an embedded cloud"), "{stderr}");
    let baseline = status(&dir);

    let backup = bulwark_json(
        &with_estate(
            &["run", "backup"],
            &["--instance", DB, "--data-dir", dir.path(), "--json"],
        ),
        EXIT_OK,
    );
    let points = backup["restore_points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{backup}");
    for p in points {
        assert_eq!(p["read"], "full", "a first backup reads every block: {p}");
        assert!(p["blocks_read"].as_u64().unwrap() > 0, "{p}");
        assert!(p["bytes_stored"].as_u64().unwrap() > 0, "{p}");
    }
    assert_eq!(
        without_bases(&status(&dir)),
        baseline,
        "a backup keeps nothing in the cloud but its base snapshots"
    );

    let (code, stdout, stderr) = bulwark(&with_estate(
        &["run", "restore"],
        &[
            "--instance",
            DB,
            "--from",
            "backup",
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--data-dir",
            dir.path(),
        ],
    ));
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("kept: restored volume of vol-0dddddddddddddddd"),
        "{stdout}"
    );
    assert!(status(&dir).contains("(333333333333, eu-west-1)"));

    // Refused before anything ran: exit 3, nothing changed.
    let before = status(&dir);
    let (code, _, stderr) = bulwark(&with_estate(
        &["run", "backup"],
        &["--instance", WEB, "--data-dir", dir.path()],
    ));
    assert_eq!(code, EXIT_REFUSED, "{stderr}");
    assert!(stderr.contains("aws-managed-key-not-shareable"), "{stderr}");
    assert_eq!(status(&dir), before);

    // Without workers the same instance backs up through the EBS direct APIs, and restores
    // into another account and region.
    let backup = bulwark_json(
        &with_estate(
            &["run", "backup"],
            &[
                "--instance",
                WEB,
                "--workers",
                "none",
                "--data-dir",
                dir.path(),
                "--json",
            ],
        ),
        EXIT_OK,
    );
    assert_eq!(backup["restore_points"].as_array().unwrap().len(), 3, "{backup}");
    let (code, stdout, stderr) = bulwark(&with_estate(
        &["run", "restore"],
        &[
            "--instance",
            WEB,
            "--from",
            "backup",
            "--workers",
            "none",
            "--to-account",
            DR,
            "--to-region",
            "eu-west-1",
            "--data-dir",
            dir.path(),
        ],
    ));
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("kept: restored volume of vol-0bbbbbbbbbbbbbbbb"),
        "{stdout}"
    );
}

#[test]
fn run_without_an_embedded_cloud_says_how_to_make_one() {
    let dir = DataDir::new("missing");
    let (code, _, stderr) = bulwark(&with_estate(
        &["run", "snapshot"],
        &["--instance", DB, "--data-dir", dir.path()],
    ));
    assert_eq!(code, 1);
    assert!(stderr.contains("bulwark embedded init --estate FILE"), "{stderr}");
}

/// The appliance is killed while its worker copies data; the next command finds the
/// unfinished session and removes everything it had created, and the repository still works.
#[test]
fn a_killed_session_is_cleaned_up_by_the_next_start() {
    let dir = DataDir::new("killed");
    init(&dir, "256");
    let baseline = status(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(with_estate(
            &["run", "backup"],
            &["--instance", DB, "--data-dir", dir.path()],
        ))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the last step: the appliance following its worker's transfer.
    let stderr = child.stderr.take().unwrap();
    let mut reached = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let numbers = line
            .trim_start()
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .map(|(n, _)| n.to_owned());
        if let Some((n, of)) = numbers.as_deref().and_then(|n| n.split_once('/')) {
            if n.trim() == of.trim() {
                reached = true;
                break;
            }
        }
    }
    assert!(reached, "the session reached its last step");
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();

    let left = status(&dir);
    assert_ne!(left, baseline, "the killed session left its worker and volumes");
    assert!(left.contains("role /bulwark/worker-"), "{left}");

    let (code, stdout, stderr) = bulwark(&["recover", "--estate", estate_path(), "--data-dir", dir.path()]);
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
    assert!(stderr.contains("Recovered unfinished session"), "{stderr}");
    assert_eq!(
        status(&dir),
        baseline,
        "recovery removed everything the session created"
    );

    // The repository is intact: a new backup runs (the dead process's lock is stale).
    let (code, stdout, stderr) = bulwark(&with_estate(
        &["run", "backup"],
        &["--instance", DB, "--data-dir", dir.path()],
    ));
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
    assert!(!stderr.contains("Recovered"), "nothing left to recover: {stderr}");
    assert_eq!(without_bases(&status(&dir)), baseline);
}

/// `status` without the base snapshots that backups keep for the next one's changes.
fn without_bases(status: &str) -> String {
    status
        .lines()
        .filter(|l| !l.starts_with("snapshot snap-"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The appliance is killed right after AWS made a change whose answer it lost: its journal
/// holds the call's intent (its client token, the session's tags) and no answer. The next
/// start finds by tag what the lost answer hid, and removes it.
#[test]
fn a_session_killed_after_a_lost_answer_is_cleaned_up_by_the_next_start() {
    let dir = DataDir::new("lost");
    init(&dir, "16");
    let baseline = status(&dir);
    let cloud = std::path::Path::new(dir.path()).join("cloud");
    for action in ["iam:CreateRole", "ec2:RunInstances", "ec2:CreateVolume"] {
        let sim = bulwark_sim::Sim::open(&cloud).unwrap();
        sim.inject(bulwark_sim::Fault::LoseResponse {
            action: action.parse().unwrap(),
        })
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(with_estate(
                &["run", "backup"],
                &["--instance", DB, "--data-dir", dir.path()],
            ))
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // The fault is spent when the call took effect and its answer was lost; the engine
        // then pauses before it looks for what the call made: it dies in that pause.
        let started = std::time::Instant::now();
        while !sim.pending_faults().unwrap().is_empty() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{action} was never called"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the session ended before {action}"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let left = status(&dir);
        assert_ne!(left, baseline, "{action}: the killed session left what it made");

        let (code, stdout, stderr) =
            bulwark(&["recover", "--estate", estate_path(), "--data-dir", dir.path()]);
        assert_eq!(code, EXIT_OK, "{action}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("Recovered unfinished session"),
            "{action}: {stderr}"
        );
        assert_eq!(
            status(&dir),
            baseline,
            "{action}: recovery removed everything the session created, the lost one too"
        );
    }
}

#[test]
fn check_passes_on_a_fresh_embedded_estate() {
    let dir = DataDir::new("check");
    init(&dir, "1");
    let (code, stdout, stderr) = bulwark(&["check", "--estate", estate_path(), "--data-dir", dir.path()]);
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok       arn:aws:iam::222222222222:role/Worker is trusted by ec2.amazonaws.com"),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 problem(s)"), "{stdout}");
    let report = bulwark_json(
        &[
            "check",
            "--estate",
            estate_path(),
            "--data-dir",
            dir.path(),
            "--json",
        ],
        EXIT_OK,
    );
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
}

/// An estate whose real key policy (given in `[embedded]`) forgot the backup account: `check`
/// names the missing statement, and the session fails at the step AWS would refuse, says why
/// and what to change, and leaves nothing behind.
#[test]
fn a_key_policy_missing_a_statement_is_found_by_check_and_fails_the_session_cleanly() {
    let original = std::fs::read_to_string(estate_path()).unwrap();
    let text = format!(
        "{original}\n[embedded.key_policies]\n\"arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001\" = '''\n{}\n'''\n",
        r#"{"Version": "2012-10-17", "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*", "Resource": "*"}]}"#
    );
    let estate = TempEstate::write("key-policy", &text, 0);
    let dir = DataDir::new("key-policy");
    let (code, stdout, stderr) = bulwark(&[
        "embedded",
        "init",
        "--estate",
        estate.path(),
        "--data-dir",
        dir.path(),
        "--data-mib",
        "1",
    ]);
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");

    let (code, stdout, _) = bulwark(&["check", "--estate", estate.path(), "--data-dir", dir.path()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "MISSING  key arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001 for arn:aws:iam::111111111111:role/WorkerDeployment"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("BulwarkUse111111111111WorkerDeployment"),
        "the fix is the statement: {stdout}"
    );

    let before = status(&dir);
    let (code, _, stderr) = bulwark(&[
        "run",
        "backup",
        "--estate",
        estate.path(),
        "--instance",
        DB,
        "--data-dir",
        dir.path(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("step 19 (ec2:CreateVolume on base snapshot of vol-0dddddddddddddddd"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed: ec2:CreateVolume failed: UnauthorizedOperation"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the key policy and the caller's IAM policies must both allow it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("what to do: give arn:aws:iam::111111111111:role/WorkerDeployment the permission"),
        "{stderr}"
    );
    assert_eq!(
        status(&dir),
        before,
        "the failed session removed everything it created"
    );

    // For programs: a stable code and the remedy apart.
    let (code, stdout, _) = bulwark(&[
        "run",
        "backup",
        "--estate",
        estate.path(),
        "--instance",
        DB,
        "--data-dir",
        dir.path(),
        "--json",
    ]);
    assert_eq!(code, 1, "{stdout}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["error"]["code"], "step-failed-access-denied", "{stdout}");
    assert!(
        answer["error"]["remedy"]
            .as_str()
            .unwrap()
            .starts_with("give arn:aws:iam::111111111111:role/WorkerDeployment the permission"),
        "{stdout}"
    );
    assert_eq!(status(&dir), before);
}

#[test]
fn a_malformed_embedded_policy_is_an_input_error_with_its_line() {
    let original = std::fs::read_to_string(estate_path()).unwrap();
    let line = original.lines().count() + 3;
    let text = format!(
        "{original}\n[embedded.role_policies]\n\"arn:aws:iam::222222222222:role/Backup\" = '{{not json'\n"
    );
    let estate = TempEstate::write("bad-embedded", &text, line);
    let (code, _, stderr) = bulwark(
        &with_estate(&["plan", "snapshot"], &["--instance", DB])
            .iter()
            .map(|a| if *a == estate_path() { estate.path() } else { a })
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, EXIT_INPUT, "{stderr}");
    assert!(
        stderr.contains(&format!(":{line}: embedded.role_policies")),
        "{stderr}"
    );
    assert!(stderr.contains("not JSON"), "{stderr}");
}

/// `--cloud aws` runs the same session through the AWS SDK: against moto (started by
/// scripts/test), where the example estate's instance does not exist, the session fails at the
/// step that needs it, with AWS's error code and what to do.
#[test]
fn run_on_aws_reaches_aws_and_reports_its_error() {
    let Ok(endpoint) = std::env::var("BULWARK_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto was not started: run scripts/test"
        );
        return;
    };
    let dir = DataDir::new("aws");
    let (code, _, stderr) = bulwark(&with_estate(
        &["run", "snapshot"],
        &[
            "--instance",
            DB,
            "--cloud",
            "aws",
            "--endpoint-url",
            &endpoint,
            "--data-dir",
            dir.path(),
        ],
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ec2:CreateSnapshots"), "{stderr}");
    assert!(stderr.contains("InvalidInstanceID.NotFound"), "{stderr}");
    assert!(stderr.contains("what to do:"), "{stderr}");
    // Nothing was left to recover.
    let (code, stdout, stderr) = bulwark(&[
        "recover",
        "--estate",
        estate_path(),
        "--cloud",
        "aws",
        "--endpoint-url",
        &endpoint,
        "--data-dir",
        dir.path(),
    ]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stdout.contains("No unfinished session."), "{stdout}");
}

/// `--log-format json`: the libraries' log events as JSON lines on standard error, each event
/// of a step carrying the session id, the step, its account and its region.
#[test]
fn log_events_are_json_lines_that_name_the_session_step_account_and_region() {
    let dir = DataDir::new("logs");
    init(&dir, "16");
    let (code, _, stderr) = bulwark(&with_estate(
        &["--log-format", "json", "--log-level", "info", "run", "snapshot"],
        &["--instance", DB, "--data-dir", dir.path()],
    ));
    assert_eq!(code, EXIT_OK, "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let message = |e: &serde_json::Value| e["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let step = events
        .iter()
        .find(|e| message(e) == "step started" && e["span"]["action"] == "ec2:CreateSnapshots")
        .unwrap_or_else(|| panic!("no step event: {stderr}"));
    assert_eq!(step["span"]["account"], "222222222222", "{step}");
    assert_eq!(step["span"]["region"], "us-east-1", "{step}");
    let session = step["spans"][0]["session"]
        .as_str()
        .expect("the session id")
        .to_owned();
    let done = events
        .iter()
        .find(|e| message(e) == "session succeeded")
        .unwrap_or_else(|| panic!("no end event: {stderr}"));
    assert_eq!(done["span"]["session"], session.as_str());

    // Text by default, at warn: a successful session logs nothing.
    let (code, _, stderr) = bulwark(&with_estate(
        &["run", "snapshot"],
        &["--instance", DB, "--data-dir", dir.path()],
    ));
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(!stderr.contains("session started"), "{stderr}");

    // A level that is not one is wrong input.
    let (code, _, stderr) = bulwark(&[
        "--log-level",
        "bulwark_engine=loud",
        "embedded",
        "status",
        "--data-dir",
        dir.path(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--log-level"), "{stderr}");
}

/// Two appliances on one data directory: two sessions at once both complete, and a `recover`
/// started while they run leaves them alone (their journals' leases are held).
#[test]
fn sessions_of_two_processes_at_once_both_complete_and_recover_leaves_them_alone() {
    let dir = DataDir::new("concurrent");
    init(&dir, "16");
    let spawn = |kind: &'static str, instance: &'static str| {
        Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(with_estate(
                &["run", kind],
                &["--instance", instance, "--data-dir", dir.path()],
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut backup = spawn("backup", DB);
    let snapshot = spawn("snapshot", WEB);
    // Once the backup is under way, recover from a third process.
    let stderr = backup.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let started = lines.by_ref().map_while(Result::ok).any(|l| {
        let fifth = l.trim_start().starts_with("[ 5/");
        before.push(l);
        fifth
    });
    if !started {
        let status = backup.wait().map(|s| s.to_string()).unwrap_or_default();
        panic!(
            "the backup did not reach its fifth step ({status}):\n{}",
            before.join("\n")
        );
    }
    let (code, stdout, recovered) =
        bulwark(&["recover", "--estate", estate_path(), "--data-dir", dir.path()]);
    assert_eq!(code, EXIT_OK, "{stdout}\n{recovered}");
    assert!(!recovered.contains("Recovered unfinished session"), "{recovered}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let backup = backup.wait().unwrap();
    assert!(backup.success(), "the backup completes:\n{}", rest.join("\n"));
    let snapshot = snapshot.wait_with_output().unwrap();
    assert!(
        snapshot.status.success(),
        "the snapshot session completes: {}",
        String::from_utf8_lossy(&snapshot.stderr)
    );
    // Nothing unfinished is left for the next start.
    let (code, _, stderr) = bulwark(&["recover", "--estate", estate_path(), "--data-dir", dir.path()]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(!stderr.contains("Recovered unfinished session"), "{stderr}");
    assert!(
        !status(&dir).contains("role /bulwark/worker-"),
        "no temporary role is left"
    );
}
