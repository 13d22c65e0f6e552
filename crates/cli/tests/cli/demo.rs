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
    assert_eq!(rows.len(), 11, "eleven scenarios:\n{stdout}");
    assert_eq!(rows.iter().filter(|r| r.contains(" ok ")).count(), 10, "{stdout}");
    let refused = rows.iter().find(|r| r.contains("refused")).expect("one refusal");
    assert!(refused.contains("workers in the backup account"), "{refused}");
    assert!(stdout.contains("[aws-managed-key-not-shareable]"), "{stdout}");
    assert!(
        stdout.contains("remedy: deploy the workers in the production account"),
        "{stdout}"
    );
    // 16 copies made with workers or as snapshots, and without workers 3 base snapshots and
    // 3 restored volumes.
    assert!(stdout.contains("22 identical"), "{stdout}");
    assert!(stdout.contains(" 0 left behind"), "{stdout}");
    assert!(stdout.contains("nothing was left behind"), "{stdout}");
}
