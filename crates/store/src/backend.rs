//! Which database the store runs on, and what its connections and its
//! transactions both build on.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A `db.transaction` span under the current one; none outside a traced
/// call or job.
pub(crate) fn transaction_span(backend: Backend) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "db.transaction",
        otel.kind = "client",
        db.system.name = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        },
    )
}

/// A PostgreSQL `text[]` parameter.
pub(crate) fn string_array(items: &[&str]) -> sea_orm::Value {
    sea_orm::Value::Array(
        sea_orm::sea_query::ArrayType::String,
        Some(Box::new(items.iter().map(|s| sea_orm::Value::from(*s)).collect())),
    )
}
