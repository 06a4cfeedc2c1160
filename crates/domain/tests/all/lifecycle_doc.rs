//! `docs/lifecycle.md` and `docs/account-lifecycle.md` are generated from
//! the transition tables and must match them.

#[test]
fn lifecycle_doc_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/lifecycle.md");
    let expected = leadflow_domain::diagram::lifecycle_markdown();
    if std::env::var_os("LEADFLOW_UPDATE_DOCS").is_some() {
        std::fs::write(path, &expected).expect("write docs/lifecycle.md");
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/lifecycle.md is out of date with the transition table; regenerate it with\n  \
         LEADFLOW_UPDATE_DOCS=1 cargo test -p leadflow-domain --test all lifecycle_doc"
    );
}

#[test]
fn account_lifecycle_doc_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/account-lifecycle.md");
    let expected = leadflow_domain::diagram::account_lifecycle_markdown();
    if std::env::var_os("LEADFLOW_UPDATE_DOCS").is_some() {
        std::fs::write(path, &expected).expect("write docs/account-lifecycle.md");
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/account-lifecycle.md is out of date with the account table; regenerate it with\n  \
         LEADFLOW_UPDATE_DOCS=1 cargo test -p leadflow-domain --test all lifecycle_doc"
    );
}
