//! `bulwark worker`, the program of worker instances: it exists, and off EC2 it says where it
//! must run instead of waiting for a task.

use super::support::*;

#[test]
fn worker_has_help() {
    let (code, stdout, stderr) = bulwark(&["worker", "--help"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    for part in ["--queue <URL>", "--endpoint-url <URL>", "EC2 worker instance"] {
        assert!(stdout.contains(part), "{part}: {stdout}");
    }
}

#[test]
fn worker_off_ec2_fails_saying_it_must_run_on_a_worker_instance() {
    // The metadata service on a closed local port: refused at once, as off EC2.
    let out = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args([
            "worker",
            "--queue",
            "https://sqs.eu-west-1.amazonaws.com/111111111111/bulwark-q",
        ])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("BULWARK_SESSION_KEY", "0".repeat(64))
        .env_remove("BULWARK_AWS_ENDPOINT")
        .output()
        .expect("run the bulwark binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("must run on an EC2 worker instance"), "{stderr}");
    assert!(stderr.contains("instance metadata service"), "{stderr}");
}

#[test]
fn a_worker_without_its_session_key_says_so() {
    let run = |key: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bulwark"));
        c.args([
            "worker",
            "--queue",
            "https://sqs.eu-west-1.amazonaws.com/111111111111/bulwark-q",
        ])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("BULWARK_SESSION_KEY");
        if let Some(key) = key {
            c.env("BULWARK_SESSION_KEY", key);
        }
        let out = c.output().expect("run the bulwark binary");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--session-key"), "{stderr}");
    let (code, stderr) = run(Some("not-hex"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("BULWARK_SESSION_KEY is not a session key"),
        "{stderr}"
    );
}
