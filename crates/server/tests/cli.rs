//! The `leadflow` command, as a user runs it.

use std::process::Command;

fn leadflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(args)
        .output()
        .expect("run leadflow")
}

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.toml").to_owned()
}

#[test]
fn policy_validate_accepts_the_example() {
    let out = leadflow(&["policy", "validate", &example()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"acme-b2b\" is valid"));
}

#[test]
fn policy_validate_prints_every_problem_with_its_path_and_fails() {
    let dir = std::env::temp_dir().join(format!("leadflow-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.toml");
    let source = std::fs::read_to_string(example())
        .expect("example")
        .replace("type = \"webinar_attended\"", "type = \"webinar_atended\"")
        .replace("half_life = \"30d\"", "half_life = \"a month\"");
    std::fs::write(&file, source).expect("write");
    let out = leadflow(&["policy", "validate", file.to_str().expect("path")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("engagement[1].type: unknown engagement type \"webinar_atended\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("decay.half_life: bad duration \"a month\""),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
}

#[test]
fn migrate_creates_a_sqlite_database() {
    let dir = std::env::temp_dir().join(format!("leadflow-cli-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("x.db").display());
    let out = leadflow(&["migrate", "--database-url", &url]);
    let exists = dir.join("x.db").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(exists);
}

#[test]
fn bad_configuration_is_refused_before_anything_starts() {
    let refused = |out: &std::process::Output, expected: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    };
    refused(
        &leadflow(&["serve", "--database-url", "mysql://u:pw@nope/x"]),
        "bad database_url from flag --database-url: sqlite://PATH or postgres://…, not mysql://u:***@nope/x",
    );
    refused(
        &leadflow(&["serve", "--listen", "not-an-address"]),
        "bad listen from flag --listen: \"not-an-address\" is not an address",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["serve"])
        .env("LEADFLOW_MAX_IN_FLIGHT", "lots")
        .output()
        .expect("run leadflow");
    refused(
        &out,
        "bad max_in_flight from environment variable LEADFLOW_MAX_IN_FLIGHT: \"lots\" is not a whole number",
    );
    let dir = std::env::temp_dir().join(format!("leadflow-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("leadflow.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n\ntimer_poll_ms = 1\n").expect("write");
    let out = leadflow(&["serve", "--config", &file.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    refused(
        &out,
        &format!(
            "bad timer_poll_ms from {} line 3: 1 is not from 10 to 3600000",
            file.display()
        ),
    );
}

#[test]
fn config_show_prints_each_setting_with_its_source() {
    let dir = std::env::temp_dir().join(format!("leadflow-cli-show-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("leadflow.toml");
    std::fs::write(
        &file,
        "database_url = \"postgres://app:hunter2@db:5432/leadflow\"\nlisten = \"0.0.0.0:50051\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args([
            "config",
            "show",
            "--config",
            &file.display().to_string(),
            "--listen",
            "127.0.0.1:6000",
        ])
        .env("LEADFLOW_MAX_CONNECTIONS", "32")
        .env("OTEL_SERVICE_NAME", "leadflow-eu")
        .output()
        .expect("run leadflow");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("hunter2"), "{stdout}");
    for expected in [
        "database_url = \"postgres://app:***@db:5432/leadflow\"",
        "line 1",
        "listen = \"127.0.0.1:6000\"",
        "# flag --listen",
        "max_connections = 32",
        "# environment variable LEADFLOW_MAX_CONNECTIONS",
        "service_name = \"leadflow-eu\"",
        "timer_poll_ms = 1000",
        "# default",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in\n{stdout}");
    }
}

#[test]
fn help_lists_the_commands() {
    let out = leadflow(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "migrate", "policy"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn workspaces_and_tokens_are_managed_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("leadflow-cli-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("t.db");
    let url = format!("sqlite://{}", db.display());
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--database-url", url.as_str()]);
        leadflow(&all)
    };
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let out = run(&["workspace", "create", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        run(&["workspace", "create", "acme"]).status.code(),
        Some(1),
        "exists"
    );
    assert_eq!(run(&["workspace", "create", "no spaces"]).status.code(), Some(2));
    let listed = text(&run(&["workspace", "list"]));
    assert!(listed.contains("acme") && listed.contains("v1"), "{listed}");

    let bad = run(&[
        "token",
        "create",
        "--workspace",
        "acme",
        "--name",
        "x",
        "--scopes",
        "leads:reed",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("leads:read"));
    let missing = run(&[
        "token",
        "create",
        "--workspace",
        "nope",
        "--name",
        "x",
        "--scopes",
        "leads:read",
    ]);
    assert_eq!(missing.status.code(), Some(1));

    let created = run(&[
        "token",
        "create",
        "--workspace",
        "acme",
        "--name",
        "crm-sync",
        "--scopes",
        "leads:read,engagements:write",
        "--expires",
        "90d",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let secret = text(&created).trim().to_owned();
    assert!(secret.starts_with("lft_") && secret.len() > 40, "{secret}");

    let listed = text(&run(&["token", "list", "--workspace", "acme"]));
    assert!(listed.contains("crm-sync") && listed.contains("live"), "{listed}");
    assert!(!listed.contains(&secret), "the secret is never shown again");
    for file in [db.clone(), dir.join("t.db-wal")] {
        let stored = std::fs::read(&file).unwrap_or_default();
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is not in {}",
            file.display()
        );
    }

    assert!(
        run(&["token", "revoke", "--workspace", "acme", "crm-sync"])
            .status
            .success()
    );
    assert!(text(&run(&["token", "list"])).contains("revoked"));
    assert_eq!(
        run(&["token", "revoke", "--workspace", "acme", "crm-sync"])
            .status
            .code(),
        Some(1),
        "nothing left to revoke"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
