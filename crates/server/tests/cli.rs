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
        .replacen("type = \"webinar_attended\"", "type = \"webinar_atended\"", 1)
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

/// A scratch directory, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("leadflow-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `leadflow serve` process on free ports, its output (stdout and
/// stderr) going to a file as when redirected; killed on drop.
struct Served {
    child: std::process::Child,
    log: String,
    /// `http://127.0.0.1:PORT`.
    address: String,
}

impl Served {
    fn start(dir: &Scratch, database_url: &str, extra: &[&str]) -> Self {
        let log = dir.path("serve.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_leadflow"))
            .args(["serve", "--database-url", database_url])
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start leadflow serve");
        let mut served = Self {
            child,
            log,
            address: String::new(),
        };
        for _ in 0..300 {
            let text = served.log_text();
            if let Some(rest) = text.split("leadflow listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                served.address = format!("http://{addr}");
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("leadflow serve exited with {status}:\n{text}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("leadflow serve did not start:\n{}", served.log_text());
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pretty_logs_into_a_file_have_no_colour_codes() {
    let dir = Scratch::new("colour");
    let url = format!("sqlite://{}", dir.path("c.db"));
    let served = Served::start(&dir, &url, &["--log-format", "pretty"]);
    let log = std::fs::read(&served.log).expect("log");
    drop(served);
    assert!(!log.is_empty());
    assert!(
        !log.contains(&0x1b),
        "escape codes in a redirected log:\n{}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn policy_commands_send_the_token_to_a_server_that_requires_one() {
    let dir = Scratch::new("token");
    let url = format!("sqlite://{}", dir.path("t.db"));
    let migrated = leadflow(&["migrate", "--database-url", &url]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let token = |name: &str, scopes: &str| {
        let created = leadflow(&[
            "token",
            "create",
            "--workspace",
            "default",
            "--name",
            name,
            "--scopes",
            scopes,
            "--database-url",
            &url,
        ]);
        assert!(created.status.success(), "{}", stderr(&created));
        stdout(&created).trim().to_owned()
    };
    let reader = token("reports", "analytics:read");
    let token = token("policy-admin", "policy:admin");

    // A bare --require-auth: tokens even on loopback.
    let served = Served::start(&dir, &url, &["--require-auth"]);
    assert!(
        !served.log_text().contains("authentication is OFF"),
        "{}",
        served.log_text()
    );
    let remote = |args: &[&str], token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        command.args(args).args(["--against", &served.address]);
        command.env_remove("LEADFLOW_TOKEN").env_remove("LEADFLOW_SERVER");
        if let Some(token) = token {
            command.env("LEADFLOW_TOKEN", token);
        }
        command.output().expect("run leadflow")
    };
    let policy = example();

    for args in [
        &["policy", "simulate", policy.as_str()][..],
        &["policy", "activate", policy.as_str()][..],
    ] {
        let refused = remote(args, None);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        let message = stderr(&refused);
        assert!(
            message.contains("Unauthenticated: a bearer token is required")
                && message.contains("--token or LEADFLOW_TOKEN"),
            "{args:?}: {message}"
        );
    }

    let simulated = remote(&["policy", "simulate", &policy], Some(&token));
    assert!(simulated.status.success(), "{}", stderr(&simulated));
    assert!(
        stdout(&simulated).contains("0 would move; 0 would newly fail"),
        "{}",
        stdout(&simulated)
    );
    // The flag does as the variable does.
    let mut args = vec!["policy", "activate", policy.as_str(), "--token", token.as_str()];
    let activated = remote(&args, None);
    assert!(activated.status.success(), "{}", stderr(&activated));
    assert!(
        stdout(&activated).contains("policy \"acme-b2b\" is version 1 and active"),
        "{}",
        stdout(&activated)
    );
    // A made-up token, or one without policy:admin, is refused as such.
    args.truncate(3);
    let bad = remote(&args, Some("lft_not-a-real-token"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("Unauthenticated: the token is not valid"),
        "{}",
        stderr(&bad)
    );
    let unscoped = remote(&args, Some(&reader));
    assert_eq!(unscoped.status.code(), Some(1));
    assert!(
        stderr(&unscoped).contains("PermissionDenied: token \"reports\" lacks the scope policy:admin"),
        "{}",
        stderr(&unscoped)
    );
    // The funnel takes the same flags.
    let funnel = remote(&["funnel"], Some(&reader));
    assert!(funnel.status.success(), "{}", stderr(&funnel));
}

#[test]
fn require_auth_is_a_bare_flag_a_variable_or_a_file_setting() {
    let dir = Scratch::new("require-auth");
    let show = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_leadflow"))
            .args(["config", "show"])
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .expect("run leadflow");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
            .lines()
            .find(|l| l.starts_with("require_auth = "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .expect("require_auth shown")
    };
    assert_eq!(show(&[], &[]), "require_auth = false # default");
    assert_eq!(
        show(&["--require-auth"], &[]),
        "require_auth = true # flag --require-auth"
    );
    assert_eq!(
        show(&[], &[("LEADFLOW_REQUIRE_AUTH", "true")]),
        "require_auth = true # environment variable LEADFLOW_REQUIRE_AUTH"
    );
    let file = dir.path("leadflow.toml");
    std::fs::write(&file, "require_auth = true\n").expect("write");
    assert_eq!(
        show(&["--config", &file], &[]),
        format!("require_auth = true # {file} line 1")
    );
    // Without the flag, the file's setting stands.
    assert_eq!(
        show(&["--config", &file], &[("LEADFLOW_LOG_FORMAT", "json")]),
        format!("require_auth = true # {file} line 1")
    );
    let valued = leadflow(&["config", "show", "--require-auth", "true"]);
    assert_eq!(valued.status.code(), Some(2), "the flag takes no value");
}

#[test]
fn serve_help_shows_every_default_and_variable() {
    let help = stdout(&leadflow(&["serve", "--help"]));
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "[env: LEADFLOW_LISTEN] [default: 127.0.0.1:50051]",
        "[env: LEADFLOW_DATABASE_URL] [default: sqlite://leadflow.db]",
        "[env: LEADFLOW_HTTP_LISTEN] [default: 127.0.0.1:8080]",
        "[env: LEADFLOW_TIMER_POLL_MS] [default: 1000]",
        "[env: OTEL_SERVICE_NAME, LEADFLOW_SERVICE_NAME] [default: leadflow]",
        "[env: LEADFLOW_TLS_CERT]",
    ] {
        assert!(help.contains(expected), "{expected:?} not in\n{help}");
    }
    // The defaults shown are the configuration's: what `config show`
    // prints with nothing set.
    let shown = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["config", "show"])
        .env_clear()
        .output()
        .expect("run leadflow");
    let defaults = stdout(&shown);
    let defaults = defaults
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with("# default"));
    for line in defaults {
        let (name, value) = line.split_once(" = ").expect("a setting");
        let value = value.trim_end_matches("# default").trim().trim_matches('"');
        assert!(
            help.contains(&format!("[default: {value}]")),
            "{name}: {value} not in\n{help}"
        );
    }
    // Only settings have them: a flag that the file and the variables do
    // not fill keeps clap's own.
    let help = stdout(&leadflow(&["policy", "simulate", "--help"]));
    assert!(help.contains("[default: 20]"), "{help}");
}

#[test]
fn an_unreachable_server_is_reported_with_each_cause_once() {
    let out = leadflow(&["funnel", "--against", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.starts_with("leadflow: cannot reach leadflow at http://127.0.0.1:1: "),
        "{message}"
    );
    assert_eq!(message.matches("tcp connect error").count(), 1, "{message}");
    assert_eq!(message.matches("Connection refused").count(), 1, "{message}");
}

#[test]
fn tls_flags_are_refused_for_a_plain_server_and_required_for_https() {
    let out = leadflow(&["funnel", "--against", "https://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--ca-cert"), "{}", stderr(&out));
    let out = leadflow(&[
        "funnel",
        "--against",
        "http://127.0.0.1:1",
        "--ca-cert",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("are for https:// servers"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_validate_warns_of_an_unreachable_threshold_and_succeeds() {
    let dir = Scratch::new("warn");
    let file = dir.path("unreachable.toml");
    let source = std::fs::read_to_string(example())
        .expect("example")
        .replace("fit_at_least = 20", "fit_at_least = 500");
    std::fs::write(&file, &source).expect("write");
    let out = leadflow(&["policy", "validate", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (line, key) = line_and_column(&source, "fit_at_least = 500");
    let column = key + "fit_at_least = ".len();
    assert!(
        stderr(&out).contains(&format!(
            "{file}:{line}:{column} warning: stages.MQL.fit_at_least: unreachable: the fit rules give at most 40"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("is valid, with 1 warning(s)"),
        "{}",
        stdout(&out)
    );
}

/// The 1-based line and column of the first `needle` in `text`.
fn line_and_column(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("the needle is there");
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    (
        text[..at].matches('\n').count() + 1,
        text[line_start..at].chars().count() + 1,
    )
}

#[test]
fn policy_validate_prints_each_problem_at_its_file_line_and_column() {
    let dir = Scratch::new("placed");
    let file = dir.path("placed.toml");
    let source = std::fs::read_to_string(example())
        .expect("example")
        .replacen("type = \"webinar_attended\"", "type = \"webinar_atended\"", 1)
        .replace("engagement_at_least = 60", "engagment_at_least = 60");
    std::fs::write(&file, &source).expect("write");
    let out = leadflow(&["policy", "validate", &file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // `file:line:column path: message`, as editors read it.
    let (line, column) = line_and_column(&source, "\"webinar_atended\"");
    assert!(
        err.contains(&format!(
            "{file}:{line}:{column} engagement[1].type: unknown engagement type \"webinar_atended\""
        )),
        "{err}"
    );
    let (line, column) = line_and_column(&source, "engagment_at_least");
    assert!(
        err.contains(&format!(
            "{file}:{line}:{column} stages.MQL.engagment_at_least: unknown key"
        )),
        "{err}"
    );
    // The key the MQL table now lacks: at the table's header.
    let (line, column) = line_and_column(&source, "[stages.MQL]");
    assert!(
        err.contains(&format!(
            "{file}:{line}:{column} stages.MQL.engagement_at_least: required"
        )),
        "{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");
}

fn example_cases() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy-tests").to_owned()
}

#[test]
fn policy_test_passes_the_example_cases() {
    let out = leadflow(&["policy", "test", &example(), "--cases", &example_cases()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("7 passed, 0 failed, 0 could not be read"), "{text}");
    assert!(
        text.contains("ok    ") && text.contains("02-hot-lead.toml"),
        "{text}"
    );
}

/// A directory of cases, removed on drop.
struct Cases(std::path::PathBuf);

impl Cases {
    fn new(name: &str, cases: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("leadflow-cases-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (file, text) in cases {
            std::fs::write(dir.join(file), text).expect("write a case");
        }
        Self(dir)
    }

    fn run(&self) -> std::process::Output {
        leadflow(&[
            "policy",
            "test",
            &example(),
            "--cases",
            self.0.to_str().expect("path"),
        ])
    }
}

impl Drop for Cases {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const TRIALS: &str = r#"
[profile]
email = "ann@acme.com"
company = "Acme"
title = "VP Engineering"
company_size = "250"
industry = "Software"

[[engagement]]
id = "t1"
type = "trial_started"
at = "2026-01-05T09:10:00Z"

[[engagement]]
id = "t2"
type = "trial_started"
at = "2026-01-05T09:10:00Z"
"#;

#[test]
fn policy_test_prints_each_difference_of_a_failing_case_and_fails() {
    let wrong = format!(
        "description = \"two trials\"\nnow = \"2026-01-05T10:00:00Z\"\n{TRIALS}\n[expect]\nstage = \"SQL\"\n\
         level = \"hot\"\nengagement = {{ at_least = 100 }}\ntriggers = []\nblocked_by = []\n"
    );
    let right = format!("now = \"2026-01-05T10:00:00Z\"\n{TRIALS}\n[expect]\nstage = \"MQL\"\n");
    let cases = Cases::new(
        "failing",
        &[
            ("a-wrong.toml", &wrong),
            ("b-right.toml", &right),
            ("notes.txt", "not a case"),
        ],
    );
    let out = cases.run();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    for line in [
        "FAIL  ",
        "a-wrong.toml — two trials",
        "      stage: expected SQL, got MQL",
        "      level: expected hot, got none",
        "      engagement: expected x ≥ 100, got 59.",
        "      triggers: expected [], got [\"mql_welcome_sequence\"]",
        "      blocked_by: expected [], got [\"sales_ready_action\"] (no demo_requested or contact_requested yet)",
        "b-right.toml",
        "1 passed, 1 failed, 0 could not be read",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
}

#[test]
fn policy_test_reports_a_case_it_cannot_read_and_exits_2() {
    let bad_instant = format!("now = \"yesterday\"\n{TRIALS}\n[expect]\n");
    let unknown_key = format!("now = \"2026-01-05T10:00:00Z\"\n{TRIALS}\n[expect]\nstgae = \"MQL\"\n");
    let unknown_type = "now = \"2026-01-05T10:00:00Z\"\n[profile]\nemail = \"a@acme.com\"\n\
                        [[engagement]]\nid = \"x\"\ntype = \"webinar_atended\"\n\
                        at = \"2026-01-05T09:00:00Z\"\n[expect]\n";
    // the second trial comes after `now`
    let second = "id = \"t2\"\ntype = \"trial_started\"\nat = \"2026-01-05T09:";
    let late = format!("now = \"2026-01-05T09:15:00Z\"\n{TRIALS}\n[expect]\n")
        .replace(&format!("{second}10"), &format!("{second}20"));
    let twice = format!("now = \"2026-01-05T10:00:00Z\"\n{TRIALS}").replace("id = \"t2\"", "id = \"t1\"")
        + "\n[expect]\n";
    let cases = Cases::new(
        "broken",
        &[
            ("a.toml", &bad_instant),
            ("b.toml", &unknown_key),
            ("c.toml", unknown_type),
            ("d.toml", &late),
            ("e.toml", &twice),
        ],
    );
    let out = cases.run();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(&out));
    assert!(
        text.contains("now: \"yesterday\" is not an RFC 3339 instant"),
        "{text}"
    );
    assert!(
        text.contains("      unknown field `stgae`, expected one of `stage`"),
        "{text}"
    );
    assert!(text.contains("TOML parse error at line 21, column 1"), "{text}");
    // an engagement the policy refuses is a failure, not a broken case
    assert!(
        text.contains("FAIL  ") && text.contains("x refused: ") && text.contains("webinar_atended"),
        "{text}"
    );
    assert!(text.contains("engagement[1].at: after `now`"), "{text}");
    assert!(text.contains("engagement[1].id: \"t1\" is used twice"), "{text}");
    assert!(text.contains("0 passed, 1 failed, 4 could not be read"), "{text}");

    let empty = Cases::new("empty", &[]);
    let out = empty.run();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no cases (*.toml) in"), "{}", stderr(&out));
}
