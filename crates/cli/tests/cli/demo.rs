//! The demo: every documented scenario as a session on the embedded cloud.

use super::support::*;

#[test]
fn demo_runs_every_scenario_checks_the_bytes_and_leaves_nothing_behind() {
    let (code, stdout, stderr) = bulwark(&["demo", "--data-mib", "4"]);
    assert_eq!(code, EXIT_OK, "{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.len() > 3 && l[..2].trim().parse::<usize>().is_ok())
        .collect();
    assert_eq!(rows.len(), 13, "thirteen scenarios:\n{stdout}");
    assert_eq!(rows.iter().filter(|r| r.contains(" ok ")).count(), 12, "{stdout}");
    let refused = rows.iter().find(|r| r.contains("refused")).expect("one refusal");
    assert!(refused.contains("workers in the backup account"), "{refused}");
    assert!(stdout.contains("[aws-managed-key-not-shareable]"), "{stdout}");
    assert!(
        stdout.contains("remedy: deploy the workers in the production account"),
        "{stdout}"
    );
    // Every copy, compared as its session ends: snapshots, base snapshots, replicas and
    // restored volumes.
    assert!(stdout.contains("31 identical"), "{stdout}");
    // The second backup of db reads only the two blocks its 1 MiB write changed.
    let second = stdout
        .split("image backup of db again")
        .nth(1)
        .expect("the second backup of db");
    assert!(
        second.contains("vol-0eeeeeeeeeeeeeeee: 2 changed blocks read")
            && second.contains("vol-0dddddddddddddddd: 0 changed blocks read"),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 left behind"), "{stdout}");
    assert!(stdout.contains("nothing was left behind"), "{stdout}");
}
