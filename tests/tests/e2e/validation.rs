//! What `ValidatePolicy` answers: errors and warnings, each with its
//! severity, in a bounded answer however bad the document.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use pb::policy_problem::Severity;
use prost::Message as _;

async fn validate(server: &mut TestServer, source: String) -> anyhow::Result<pb::ValidatePolicyResponse> {
    Ok(server
        .policies
        .validate_policy(pb::ValidatePolicyRequest { source })
        .await?
        .into_inner())
}

async fn warnings_leave_a_policy_valid_and_storable(mut server: TestServer) -> anyhow::Result<()> {
    // Every positive engagement rule capped: at most 20 + 30 + 30 + 10 +
    // 40 + 30 + 20 + 20 + 9 = 209 points, and the threshold asks for 5000.
    let unreachable = leadflow_server::DEFAULT_POLICY
        .replacen(
            "points = 15\n\n[[engagement]]\nid = \"ebook\"",
            "points = 15\nmax_points = 30\n\n[[engagement]]\nid = \"ebook\"",
            1,
        )
        .replacen("max_per_day = 2", "max_per_day = 2\nmax_points = 40", 1)
        .replacen(
            "type = \"trial_started\"\npoints = 30",
            "type = \"trial_started\"\npoints = 30\nmax_points = 30",
            1,
        )
        .replacen("engagement_at_least = 60", "engagement_at_least = 5000", 1)
        // the levels stay above the MQL bar
        .replacen("engagement_at_least = 90", "engagement_at_least = 6000", 1)
        .replacen("engagement_at_least = 120", "engagement_at_least = 7000", 1);
    let v = validate(&mut server, unreachable.clone()).await?;
    assert!(v.valid, "{v:?}");
    assert_eq!((v.name.as_str(), v.problems_total), ("acme-b2b", 1));
    assert_eq!(v.problems.len(), 1);
    let warning = &v.problems[0];
    assert_eq!(warning.severity, Severity::Warning as i32);
    assert_eq!(warning.path, "stages.MQL.engagement_at_least");
    assert!(
        warning.message.contains("at most 209, below 5000"),
        "{}",
        warning.message
    );

    // Stored and activated like any valid policy.
    let version = activate_policy(&mut server, unreachable).await?;
    assert_eq!(version, 2);

    // Errors say so; the example has neither.
    let bad = leadflow_server::DEFAULT_POLICY.replace("half_life = \"30d\"", "half_life = \"a month\"");
    let v = validate(&mut server, bad).await?;
    assert!(!v.valid);
    assert_eq!(v.problems_total, 1);
    assert_eq!(
        v.problems
            .iter()
            .map(|p| (p.path.as_str(), p.severity))
            .collect::<Vec<_>>(),
        [("decay.half_life", Severity::Error as i32)]
    );
    let v = validate(&mut server, leadflow_server::DEFAULT_POLICY.to_owned()).await?;
    assert!(v.valid && v.problems.is_empty() && v.problems_total == 0, "{v:?}");
    Ok(())
}

async fn a_very_bad_policy_gets_a_bounded_answer(mut server: TestServer) -> anyhow::Result<()> {
    // 3,000 rules, each of an unknown engagement type.
    let mut source = leadflow_server::DEFAULT_POLICY.to_owned();
    for i in 0..3_000 {
        source.push_str(&format!(
            "\n[[engagement]]\nid = \"r{i}\"\ntype = \"nope_{i}\"\npoints = 1\n"
        ));
    }
    assert!(
        source.len() < 256 * 1024,
        "within the policy limit: {}",
        source.len()
    );
    let v = validate(&mut server, source).await?;
    assert!(!v.valid);
    assert_eq!(v.problems_total, 3_000);
    assert_eq!(v.problems.len(), 100, "the first 100 are listed");
    assert_eq!(v.problems[0].path, "engagement[12].type");
    assert!(v.problems.iter().all(|p| p.severity == Severity::Error as i32));
    assert!(v.encoded_len() < 16 * 1024, "{} bytes", v.encoded_len());

    // One line of 200 KB that is not TOML: the line is not echoed back.
    let line = format!("name = \"x\" {}", "y".repeat(200 * 1024));
    let v = validate(&mut server, line).await?;
    assert!(!v.valid);
    assert_eq!(v.problems_total, 1);
    let message = &v.problems[0].message;
    assert!(
        message.starts_with("not valid TOML at line 1, column 12"),
        "{message:.300}"
    );
    assert!(v.encoded_len() < 1_024, "{} bytes: {message}", v.encoded_len());
    Ok(())
}

/// The 1-based line and column of the first `needle` in `text`.
fn line_and_column(text: &str, needle: &str) -> (u32, u32) {
    let at = text.find(needle).expect("the needle is there");
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    (
        u32::try_from(line).expect("small"),
        u32::try_from(column).expect("small"),
    )
}

async fn every_problem_comes_with_its_line_and_column(mut server: TestServer) -> anyhow::Result<()> {
    // An error: at the value at fault.
    let bad = leadflow_server::DEFAULT_POLICY.replace("half_life = \"30d\"", "half_life = \"a month\"");
    let v = validate(&mut server, bad.clone()).await?;
    let problem = &v.problems[0];
    assert_eq!(problem.path, "decay.half_life");
    assert_eq!(
        (problem.line, problem.column),
        line_and_column(&bad, "\"a month\"")
    );

    // A warning: at the threshold no lead can reach.
    let unreachable = leadflow_server::DEFAULT_POLICY.replacen("fit_at_least = 20", "fit_at_least = 500", 1);
    let v = validate(&mut server, unreachable.clone()).await?;
    assert!(v.valid, "{v:?}");
    let warning = &v.problems[0];
    assert_eq!(
        (warning.path.as_str(), warning.severity),
        ("stages.MQL.fit_at_least", Severity::Warning as i32)
    );
    let (line, key) = line_and_column(&unreachable, "fit_at_least = 500");
    assert_eq!((warning.line, warning.column), (line, key + 15), "at the value");

    // Not TOML: where the reader stopped.
    let v = validate(&mut server, "name = \"x\"\n[stages.MQL\n".to_owned()).await?;
    assert_eq!(v.problems[0].line, 2);
    assert!(
        v.problems[0].message.starts_with(&format!(
            "not valid TOML at line 2, column {}:",
            v.problems[0].column
        )),
        "{v:?}"
    );
    Ok(())
}

scenarios! {
    warnings_leave_a_policy_valid_and_storable,
    a_very_bad_policy_gets_a_bounded_answer,
    every_problem_comes_with_its_line_and_column,
}
