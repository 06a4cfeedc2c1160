//! The configuration's layers, sources and messages.

use std::path::Path;

use super::*;

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn file(text: &str) -> Layers {
    let mut layers = Layers::default();
    layers
        .toml(Path::new("leadflow.toml"), text)
        .expect("a valid file");
    layers
}

#[test]
fn layers_apply_in_order_and_secrets_never_print() {
    let mut layers = file(
        "# settings\ndatabase_url = \"postgres://u:secret@db/leadflow\"\nlisten = \"0.0.0.0:6000\"\nmax_connections = 4\n",
    );
    layers.env(env(&[
        ("LEADFLOW_LISTEN", "0.0.0.0:6001"),
        ("LEADFLOW_MAX_CONNECTIONS", "8"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_SERVICE_NAME", "leadflow-eu"),
    ]));
    layers.flag("listen", Some("127.0.0.1:7000".to_owned()));
    layers.flag("http_listen", None);
    let resolved = layers.resolve().expect("valid");
    let config = &resolved.config;
    assert_eq!(config.listen.port(), 7000);
    assert_eq!(config.max_connections, 8);
    assert_eq!(config.otlp_endpoint.as_deref(), Some("http://collector:4317"));
    assert_eq!(config.service_name, "leadflow-eu");
    assert_eq!(config.http_listen, Config::default().http_listen);
    let shown = resolved.show();
    assert!(!shown.contains("secret"), "{shown}");
    for expected in [
        "database_url = \"postgres://u:***@db/leadflow\"",
        "# leadflow.toml line 2",
        "listen = \"127.0.0.1:7000\"",
        "# flag --listen",
        "max_connections = 8",
        "# environment variable LEADFLOW_MAX_CONNECTIONS",
        "# environment variable OTEL_EXPORTER_OTLP_ENDPOINT",
        "http_listen = \"127.0.0.1:8080\"",
        "# tls_cert is not set",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }
    // what it prints is a configuration file again
    let again = file(&shown).resolve().expect("show prints valid TOML");
    assert_eq!(again.config.listen, config.listen);
    assert!(!format!("{config:?}").contains("secret"));
}

#[test]
fn bad_values_name_their_source() {
    let bad = |layers: Layers| layers.resolve().expect_err("refused").to_string();
    let message = bad(file("listen = \"0.0.0.0:6000\"\n\nmax_connections = 0\n"));
    assert_eq!(
        message,
        "bad max_connections from leadflow.toml line 3: 0 is not from 1 to 1000"
    );

    let mut layers = file("listen = \"0.0.0.0:6000\"\n");
    layers.env(env(&[("LEADFLOW_DB_ACQUIRE_TIMEOUT_MS", "soon")]));
    assert!(
        bad(layers).starts_with(
            "bad db_acquire_timeout_ms from environment variable LEADFLOW_DB_ACQUIRE_TIMEOUT_MS"
        ),
    );

    let mut layers = Layers::default();
    layers.flag("listen", Some("localhost".to_owned()));
    let message = bad(layers);
    assert!(
        message.starts_with("bad listen from flag --listen: \"localhost\""),
        "{message}"
    );

    let mut layers = Layers::default();
    layers.flag("database_url", Some("mysql://u:pw@db/x".to_owned()));
    let message = bad(layers);
    assert!(
        message.contains("flag --database-url") && !message.contains("pw"),
        "{message}"
    );

    let mut layers = Layers::default();
    layers.env(env(&[("LEADFLOW_TLS_CERT", "/etc/leadflow/cert.pem")]));
    assert_eq!(
        bad(layers),
        "bad tls_cert from environment variable LEADFLOW_TLS_CERT: TLS needs tls_key too"
    );

    for (text, expected) in [
        (
            "listen = \"0.0.0.0:1\"\ncolour = 1\n",
            "bad config from leadflow.toml line 2: no setting is called \"colour\"",
        ),
        (
            "require_auth = \"maybe\"\n",
            "bad require_auth from leadflow.toml line 1: \"maybe\" is not true or false",
        ),
        (
            "log_format = [1]\n",
            "bad log_format from leadflow.toml line 1: a string, a whole number or true/false, not sequence",
        ),
        (
            "otlp_endpoint = \"collector:4317\"\n",
            "bad otlp_endpoint from leadflow.toml line 1: \"collector:4317\" is not an http:// or https:// URL",
        ),
        (
            "nats_url = \"nats://relay:secret@nats:4222,127.0.0.1:4223\"\n",
            "bad nats_url from leadflow.toml line 1: \"nats://relay:***@nats:4222,127.0.0.1:4223\" is not nats://HOST:PORT or tls://HOST:PORT (several separated by commas)",
        ),
        (
            "nats_stream = \"leadflow.events\"\n",
            "bad nats_stream from leadflow.toml line 1: \"leadflow.events\": a stream name is 1 to 64 of A-Z a-z 0-9 - _",
        ),
        (
            "nats_replicas = 0\n",
            "bad nats_replicas from leadflow.toml line 1: 0 is not from 1 to 5",
        ),
    ] {
        let mut layers = Layers::default();
        let error = layers
            .toml(Path::new("leadflow.toml"), text)
            .and_then(|()| layers.resolve().map(drop))
            .expect_err(text);
        assert_eq!(error.to_string(), expected);
    }
    let mut layers = Layers::default();
    let broken = layers
        .toml(Path::new("leadflow.toml"), "listen = \"0.0.0.0:1\"\nlisten = \n")
        .expect_err("not TOML");
    assert!(
        broken
            .to_string()
            .starts_with("bad config from leadflow.toml line 2"),
        "{broken}"
    );
}

#[test]
fn empty_variables_are_unset_and_endpoints_are_urls() {
    let mut layers = Layers::default();
    layers.env(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ("OTEL_SERVICE_NAME", " "),
    ]));
    let config = layers.resolve().expect("empty variables are unset").config;
    assert_eq!(
        (config.otlp_endpoint, config.service_name.as_str()),
        (None, "leadflow")
    );
    for (url, ok) in [
        ("http://x", true),
        ("https://collector.example:4317", true),
        ("http://bad host:4317", false),
        ("ftp://collector:21", false),
        ("http://", false),
    ] {
        let mut layers = Layers::default();
        layers.flag("otlp_endpoint", Some(url.to_owned()));
        assert_eq!(layers.resolve().is_ok(), ok, "{url}");
    }
    let mut layers = Layers::default();
    layers.env(env(&[("LEADFLOW_TLS_CLIENT_CA", "/etc/leadflow/ca.pem")]));
    assert_eq!(
        layers.resolve().expect_err("no certificate").to_string(),
        "bad tls_client_ca from environment variable LEADFLOW_TLS_CLIENT_CA: TLS needs tls_cert too"
    );
}

/// `--log-level` beats `RUST_LOG`, which beats the file.
#[test]
fn the_log_level_flag_beats_rust_log() {
    let mut layers = file("log_level = \"warn\"\n");
    layers.env(env(&[("RUST_LOG", "debug")]));
    assert_eq!(layers.resolve().expect("valid").config.log_level, "debug");
    layers.flag("log_level", Some("error".to_owned()));
    let resolved = layers.resolve().expect("valid");
    assert_eq!(resolved.config.log_level, "error");
    assert!(resolved.show().contains("# flag --log-level"));
    let mut layers = Layers::default();
    layers.env(env(&[("RUST_LOG", "debug"), ("LEADFLOW_LOG_LEVEL", "info")]));
    assert_eq!(layers.resolve().expect("valid").config.log_level, "info");
}

#[test]
fn every_setting_is_a_flag_a_variable_and_a_key() {
    let keys = Config::keys();
    assert!(keys.len() >= 18, "{keys:?}");
    let defaults = Layers::default().resolve().expect("defaults are valid");
    let shown = defaults.show();
    for key in &keys {
        assert!(
            shown.contains(&format!("{key} = ")) || shown.contains(&format!("# {key} is not set")),
            "{key}"
        );
        assert!(variables(key).contains(&format!("LEADFLOW_{}", key.to_ascii_uppercase())));
    }
}
