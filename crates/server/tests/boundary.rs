//! The server reaches the store only to open the database: everything else
//! goes through the engine's use cases and its own types.

use std::path::{Path, PathBuf};

/// What the server may name of `leadflow_store`: opening the database, and
/// showing its URL without a password.
const ALLOWED: [&str; 3] = ["Store", "StoreOptions", "redact"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the server's sources are readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names a source file takes from `leadflow_store`, as `leadflow_store::X`
/// paths and `use leadflow_store::{…}` lists.
fn store_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("leadflow_store::") {
        rest = &rest[at + "leadflow_store::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            names.extend(
                list[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or_default().to_owned())
                    .filter(|n| !n.is_empty()),
            );
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..end].to_owned());
        }
    }
    names
}

#[test]
fn the_server_opens_the_store_and_uses_nothing_else_of_it() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 10, "the server's sources were found");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        for name in store_names(&text) {
            if !ALLOWED.contains(&name.as_str()) {
                found.push(format!("{}: leadflow_store::{name}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the server reaches past the engine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_what_it_looks_for() {
    assert_eq!(
        store_names("use leadflow_store::{Store, TokenRecord};\nlet x = leadflow_store::redact(u);"),
        ["Store", "TokenRecord", "redact"]
    );
}
