//! The layers of a configuration and where each value came from: figment
//! merges them and keeps each value's provider; the file's lines are read
//! from the document's spans.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{Config, DatabaseUrl, Secret, variables};

/// Where a setting's value came from, for error messages and
/// `leadflow config show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A line of the configuration file.
    File {
        path: PathBuf,
        line: usize,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path, line } => write!(f, "{} line {line}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A setting the configuration could not take, and where it came from.
/// The process exits with status 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("bad {key} from {origin}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub origin: Source,
    pub message: String,
}

/// One layer's values, named as its source is: figment keeps the name
/// with every value, so a value's source is known after the merge.
struct Layer {
    name: String,
    file: Option<PathBuf>,
    values: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named(self.name.clone());
        match &self.file {
            Some(path) => metadata.source(path.as_path()),
            None => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The layers of a configuration, defaults first.
#[derive(Debug)]
pub struct Layers {
    figment: Figment,
    /// The file's text, for the line of a setting.
    file: Option<(PathBuf, String)>,
}

impl Default for Layers {
    fn default() -> Self {
        Self {
            figment: Figment::from(figment::providers::Serialized::defaults(Config::default())),
            file: None,
        }
    }
}

impl Layers {
    /// Adds a TOML file of settings.
    pub fn file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "config".to_owned(),
            origin: Source::File {
                path: path.to_owned(),
                line: 1,
            },
            message: format!("cannot read it: {e}"),
        })?;
        self.toml(path, &text)
    }

    /// Adds the settings of `text`, a TOML document read from `path`.
    pub fn toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            key: "config".to_owned(),
            origin: Source::File {
                path: path.to_owned(),
                line: e.span().map_or(1, |s| line_of(text, s.start)),
            },
            message: e.message().to_owned(),
        })?;
        let values = match Value::serialize(&table) {
            Ok(Value::Dict(_, values)) => values,
            _ => Dict::new(),
        };
        self.figment = std::mem::take(&mut self.figment).merge(Layer {
            name: "file".to_owned(),
            file: Some(path.to_owned()),
            values,
        });
        self.file = Some((path.to_owned(), text.to_owned()));
        Ok(())
    }

    /// Adds the settings of the environment, as `var` reads it. An empty
    /// variable counts as unset (as OpenTelemetry's do).
    pub fn env(&mut self, var: impl Fn(&str) -> Option<String>) {
        for key in Config::keys() {
            for name in variables(&key) {
                if let Some(value) = var(&name).filter(|v| !v.trim().is_empty()) {
                    let value = value.parse::<Value>().unwrap_or(Value::from(value));
                    self.given(format!("environment variable {name}"), &key, value);
                }
            }
        }
    }

    /// Adds the flags given on the command line: those of `matches` (the
    /// settings' arguments) whose value came from the command line, as
    /// `given` has them parsed.
    pub fn flags(&mut self, given: &Config, matches: &clap::ArgMatches) {
        let Ok(Value::Dict(_, values)) = Value::serialize(given) else {
            return;
        };
        for key in Config::keys() {
            if matches.value_source(&key) == Some(clap::parser::ValueSource::CommandLine)
                && let Some(value) = values.get(&key)
            {
                let flag = format!("--{}", key.replace('_', "-"));
                self.given(format!("flag {flag}"), &key, value.clone());
            }
        }
    }

    /// Adds one flag's value, by the setting's name (for callers that take
    /// a setting from a flag of their own, such as `--database-url`).
    pub fn flag(&mut self, key: &str, value: Option<String>) {
        if let Some(value) = value {
            let flag = format!("--{}", key.replace('_', "-"));
            let value = value.parse::<Value>().unwrap_or(Value::from(value));
            self.given(format!("flag {flag}"), key, value);
        }
    }

    fn given(&mut self, name: String, key: &str, value: Value) {
        let mut values = Dict::new();
        values.insert(key.to_owned(), value);
        self.figment = std::mem::take(&mut self.figment).merge(Layer {
            name,
            file: None,
            values,
        });
    }

    /// Where the value of `key` came from.
    fn source(&self, key: &str) -> Source {
        match self.figment.find_metadata(key) {
            Some(m) if m.source.as_ref().and_then(|s| s.file_path()).is_some() => {
                let path = m
                    .source
                    .as_ref()
                    .and_then(|s| s.file_path())
                    .map(Path::to_owned)
                    .unwrap_or_default();
                let line = self.file.as_ref().map_or(1, |(_, text)| key_line(text, key));
                Source::File { path, line }
            }
            Some(m) if m.name.starts_with("environment variable ") => {
                Source::Env(m.name.trim_start_matches("environment variable ").to_owned())
            }
            Some(m) if m.name.starts_with("flag ") => {
                Source::Flag(m.name.trim_start_matches("flag ").to_owned())
            }
            _ => Source::Default,
        }
    }

    /// The configuration: defaults, then these layers in order; every value
    /// checked, a bad one named with its source.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let config: Config = self.figment.extract().map_err(|e| self.explain(e))?;
        config.validate().map_err(|(key, message)| ConfigError {
            key: key.to_owned(),
            origin: self.source(key),
            message,
        })?;
        let sources = Config::keys()
            .into_iter()
            .map(|key| {
                let source = self.source(&key);
                (key, source)
            })
            .collect();
        Ok(Resolved { config, sources })
    }

    /// A value figment could not read as its setting's type.
    fn explain(&self, e: figment::Error) -> ConfigError {
        use figment::error::{Actual, Kind};
        let key = e.path.first().cloned().unwrap_or_else(|| "config".to_owned());
        match &e.kind {
            Kind::UnknownField(name, _) => ConfigError {
                key: "config".to_owned(),
                origin: match self.file.as_ref() {
                    Some((path, text)) => Source::File {
                        path: path.clone(),
                        line: key_line(text, name),
                    },
                    None => Source::Default,
                },
                message: format!("no setting is called {name:?}"),
            },
            Kind::InvalidType(actual, expected) => {
                let shown = match actual {
                    Actual::Str(s) => format!("{s:?}"),
                    Actual::Signed(n) => n.to_string(),
                    Actual::Unsigned(n) => n.to_string(),
                    Actual::Bool(b) => b.to_string(),
                    other => format!("a {other}"),
                };
                let whole = [
                    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
                ];
                let message = if expected.contains("bool") {
                    format!("{shown} is not true or false")
                } else if expected.contains("integer") || whole.contains(&expected.as_str()) {
                    format!("{shown} is not a whole number")
                } else {
                    match actual {
                        Actual::Str(_) | Actual::Signed(_) | Actual::Unsigned(_) | Actual::Bool(_) => {
                            format!("{shown} is not {expected}")
                        }
                        other => format!("a string, a whole number or true/false, not {other}"),
                    }
                };
                ConfigError {
                    origin: self.source(&key),
                    key,
                    message,
                }
            }
            _ => {
                let given = match self.figment.find_value(&key) {
                    Ok(Value::String(_, s)) => format!("{s:?}"),
                    Ok(other) => format!("{other:?}"),
                    Err(_) => String::new(),
                };
                let message = match &e.kind {
                    Kind::Message(m) if m.contains("socket address") => {
                        format!("{given} is not an address like 127.0.0.1:50051 or [::]:50051")
                    }
                    kind => format!("{given} is not valid here: {kind}"),
                };
                ConfigError {
                    origin: self.source(&key),
                    key,
                    message,
                }
            }
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The line where `key` is set at the top level of a TOML document, read
/// with the document's spans.
fn key_line(text: &str, key: &str) -> usize {
    let Ok(table) = toml::de::DeTable::parse(text) else {
        return 1;
    };
    table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map_or(1, |(k, _)| line_of(text, k.span().start))
}

/// A configuration and where each of its settings came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub config: Config,
    pub sources: Vec<(String, Source)>,
}

impl Resolved {
    /// The effective configuration as TOML, each setting with its source;
    /// secrets redacted.
    pub fn show(&self) -> String {
        let shown = Config {
            database_url: DatabaseUrl::new(self.config.database_url.to_string()),
            nats_url: self.config.nats_url.as_ref().map(|u| Secret::new(u.to_string())),
            ..self.config.clone()
        };
        let values = match Value::serialize(&shown) {
            Ok(Value::Dict(_, values)) => values,
            _ => Dict::new(),
        };
        let mut out = String::new();
        for (key, source) in &self.sources {
            let line = match values.get(key) {
                Some(Value::String(_, s)) => format!("{key} = {}", leadflow_domain::policy::toml_string(s)),
                Some(Value::Num(_, n)) => format!("{key} = {}", number(n)),
                Some(Value::Bool(_, b)) => format!("{key} = {b}"),
                _ => format!("# {key} is not set"),
            };
            out.push_str(&format!("{line:<60} # {source}\n"));
        }
        out
    }
}

pub(super) fn number(n: &figment::value::Num) -> String {
    n.to_u128()
        .map(|u| u.to_string())
        .or_else(|| n.to_i128().map(|i| i.to_string()))
        .or_else(|| n.to_f64().map(|f| f.to_string()))
        .unwrap_or_default()
}
