//! The demo.

use super::support::*;

#[test]
fn demo_plans_and_refuses_the_documented_scenarios() {
    let (code, stdout, stderr) = bulwark(&["demo", "--volume-mib", "8"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(
        stdout.contains("refused [aws-managed-key-not-shareable]"),
        "{stdout}"
    );

    let scenarios = parse_demo(&stdout);
    let planned = scenarios
        .iter()
        .filter(|(_, o)| matches!(o, DemoOutcome::Planned { .. }))
        .count();
    let refused = scenarios.len() - planned;
    assert!(planned > 0 && refused > 0, "{stdout}");

    let summary = stdout
        .lines()
        .find(|l| l.contains("refused before anything ran"))
        .expect("a summary line");
    assert!(
        summary.starts_with(&format!("{planned} planned, {refused} refused")),
        "the summary counts the scenarios above it: {summary}"
    );
    // Then the image-level backup cycle, which must restore the volume bit for bit.
    assert!(
        stdout.contains("full backup") && stdout.contains("incremental"),
        "{stdout}"
    );
    assert!(
        stdout.contains("restored volume is identical to the source; verify --read-data: no problems"),
        "{stdout}"
    );
}

#[test]
fn demo_outcomes_match_the_plan_command() {
    let (code, stdout, _) = bulwark(&["demo", "--volume-mib", "8"]);
    assert_eq!(code, EXIT_OK);
    let demo = parse_demo(&stdout);
    let scenarios = demo_scenarios();
    assert_eq!(demo.len(), scenarios.len(), "{stdout}");
    for ((title, outcome), scenario) in demo.iter().zip(&scenarios) {
        let (code, out, _) = bulwark(&plan_args(&["plan"], scenario));
        let doc: Value = serde_json::from_str(&out).unwrap();
        let cli = match code {
            EXIT_OK => DemoOutcome::Planned {
                steps: doc["steps"].as_array().unwrap().len(),
                cleanup: doc["cleanup"].as_array().unwrap().len(),
            },
            EXIT_REFUSED => DemoOutcome::Refused(doc["error"]["code"].as_str().unwrap().to_owned()),
            other => panic!("{title}: {scenario:?} exit {other}: {out}"),
        };
        assert_eq!(
            outcome,
            &cli,
            "{title}: demo vs `bulwark plan {}`",
            scenario.join(" ")
        );
    }
}

#[test]
fn demo_full_prints_every_planned_scenario_in_full() {
    let (code, stdout, stderr) = bulwark(&["demo", "--full", "--volume-mib", "8"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let planned = parse_demo(&stdout)
        .iter()
        .filter(|(_, o)| matches!(o, DemoOutcome::Planned { .. }))
        .count();
    assert_eq!(stdout.matches("\nPlan: ").count(), planned, "{stdout}");
}
