//! Lead search: a workspace's leads by stage, grade, capture and
//! stage-entry instants and score ranges, in an order, a page at a time.
//!
//! Score ranges are ranges of the search keys each write stores (the
//! default model's on `leads`, every other model's in `lead_scores`; see
//! `leadflow_domain::score::ScoreState::search_key`), so the indexed forms
//! are index range scans. The caller turns a score range at an instant into
//! a key range, widened a little; it checks each lead's exact scores itself.

use std::collections::HashMap;

use leadflow_domain::{Policy, Stage};
use sea_orm::{ConnectionTrait, EntityTrait, FromQueryResult, Value};

use crate::Store;
use crate::backend::Backend;
use crate::convert;
use crate::entity::{lead, policy};
use crate::error::StoreError;
use crate::records::LeadRecord;

/// Which of a model's scores a key range or an order reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreColumn {
    /// Not decayed: the value itself.
    Fit,
    /// The lifetime engagement score's search key.
    Engagement,
    /// The qualifying engagement score's search key.
    Qualifying,
}

/// One model's score between two keys (both inclusive).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRange {
    /// `None`: the default model.
    pub model: Option<String>,
    pub column: ScoreColumn,
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
}

/// The order of a search; ties by id.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchOrder {
    Id,
    /// By a model's score (its key).
    Score {
        model: Option<String>,
        column: ScoreColumn,
    },
    EnteredStage,
    Captured,
}

/// Where a page ended: the last lead's order value and id.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchCursor {
    /// The order value (a key, or an instant in microseconds as a number);
    /// `None` for the id order.
    pub value: Option<f64>,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeadSearch {
    /// Any of these (none: every stage).
    pub stages: Vec<Stage>,
    /// Any of these grades (none: every grade).
    pub grades: Vec<String>,
    /// `[start, end)` in microseconds.
    pub captured: (Option<i64>, Option<i64>),
    pub entered_stage: (Option<i64>, Option<i64>),
    /// Leads of any of these owners (none: any owner, or none).
    pub owners: Vec<String>,
    /// Leads without an owner only.
    pub unassigned: bool,
    pub ranges: Vec<KeyRange>,
    pub order: SearchOrder,
    pub descending: bool,
    pub after: Option<SearchCursor>,
    pub limit: u64,
}

/// A lead found, with the value it was ordered by.
#[derive(Clone, Debug)]
pub struct Found {
    pub record: LeadRecord,
    pub cursor: SearchCursor,
}

/// A query under construction: its text and its parameters, numbered.
struct Sql {
    backend: Backend,
    text: String,
    params: Vec<Value>,
}

impl Sql {
    fn param(&mut self, value: impl Into<Value>) -> String {
        self.params.push(value.into());
        match self.backend {
            Backend::Postgres => format!("${}", self.params.len()),
            Backend::Sqlite => format!("?{}", self.params.len()),
        }
    }
}

fn key_column(column: ScoreColumn) -> &'static str {
    match column {
        ScoreColumn::Fit => "fit",
        ScoreColumn::Engagement => "engagement_key",
        ScoreColumn::Qualifying => "qualifying_key",
    }
}

impl Store {
    /// A page of the workspace's leads (not erased) that `search` asks for,
    /// in its order.
    pub async fn search_leads(&self, ws: &str, search: &LeadSearch) -> Result<Vec<Found>, StoreError> {
        let mut q = Sql {
            backend: self.backend(),
            text: String::new(),
            params: Vec::new(),
        };
        let ws_param = q.param(ws);
        // Each model other than the default is joined once, by its alias.
        let mut joins: Vec<(Option<String>, String)> = vec![(None, "l".to_owned())];
        // A range needs the model's row (an inner join, driven by its
        // index); an order alone keeps the leads without one (last).
        let mut alias = |q: &mut Sql, model: &Option<String>, inner: bool| -> String {
            if let Some((_, a)) = joins.iter().find(|(m, _)| m == model) {
                return a.clone();
            }
            let a = format!("s{}", joins.len());
            let model_param = q.param(model.clone().unwrap_or_default());
            joins.push((model.clone(), a.clone()));
            let join = if inner { "JOIN" } else { "LEFT JOIN" };
            q.text.push_str(&format!(
                " {join} lead_scores {a} ON {a}.workspace_id = l.workspace_id AND {a}.model = {model_param} \
                 AND {a}.lead_id = l.id"
            ));
            a
        };
        let mut conditions = vec![
            format!("l.workspace_id = {ws_param}"),
            "l.erased_at IS NULL".to_owned(),
        ];
        // Merged leads only when asked for.
        if search.stages.is_empty() {
            conditions.push("l.stage <> 'MERGED'".to_owned());
        } else {
            let list: Vec<String> = search.stages.iter().map(|s| q.param(s.as_str())).collect();
            conditions.push(format!("l.stage IN ({})", list.join(", ")));
        }
        if !search.grades.is_empty() {
            let list: Vec<String> = search.grades.iter().map(|g| q.param(g.clone())).collect();
            conditions.push(format!("l.grade IN ({})", list.join(", ")));
        }
        if !search.owners.is_empty() {
            let list: Vec<String> = search.owners.iter().map(|o| q.param(o.clone())).collect();
            conditions.push(format!("l.owner_id IN ({})", list.join(", ")));
        }
        if search.unassigned {
            conditions.push("l.owner_id IS NULL".to_owned());
        }
        for (column, (start, end)) in [
            ("l.captured_at", search.captured),
            ("l.entered_stage_at", search.entered_stage),
        ] {
            if let Some(start) = start {
                conditions.push(format!("{column} >= {}", q.param(start)));
            }
            if let Some(end) = end {
                conditions.push(format!("{column} < {}", q.param(end)));
            }
        }
        for range in &search.ranges {
            let a = alias(&mut q, &range.model, true);
            let column = format!("{a}.{}", key_column(range.column));
            let mut within = Vec::new();
            if let Some(lo) = range.at_least {
                within.push(format!("{column} >= {}", q.param(lo)));
            }
            if let Some(hi) = range.at_most {
                within.push(format!("{column} <= {}", q.param(hi)));
            }
            if within.is_empty() {
                continue;
            }
            // A lead without default keys (its policy version unreadable
            // when the migration keyed) is read, and checked by its scores.
            let within = within.join(" AND ");
            conditions.push(match &range.model {
                None => format!("(({within}) OR l.engagement_key IS NULL)"),
                Some(_) => within,
            });
        }
        let order = match &search.order {
            SearchOrder::Id => None,
            SearchOrder::Score { model, column } => {
                let a = alias(&mut q, model, false);
                Some(format!("{a}.{}", key_column(*column)))
            }
            SearchOrder::EnteredStage => Some("l.entered_stage_at".to_owned()),
            SearchOrder::Captured => Some("l.captured_at".to_owned()),
        };
        // Leads without a key come last ascending, first descending (as
        // an index in ascending order holds them, read either way).
        let (cmp, dir, nulls) = if search.descending {
            ("<", "DESC", "NULLS FIRST")
        } else {
            (">", "ASC", "NULLS LAST")
        };
        if let Some(after) = &search.after {
            let id = q.param(after.id.clone());
            let instant = matches!(search.order, SearchOrder::EnteredStage | SearchOrder::Captured);
            match (&order, after.value) {
                (Some(expr), Some(v)) => {
                    let value = if instant {
                        #[allow(clippy::cast_possible_truncation)] // instants are whole microseconds
                        q.param(v as i64)
                    } else {
                        q.param(v)
                    };
                    let next = format!("({expr}, l.id) {cmp} ({value}, {id})");
                    conditions.push(if search.descending || instant {
                        next
                    } else {
                        format!("({next} OR {expr} IS NULL)")
                    });
                }
                // after a lead without a key
                (Some(expr), None) => conditions.push(if search.descending {
                    format!("(({expr} IS NULL AND l.id {cmp} {id}) OR {expr} IS NOT NULL)")
                } else {
                    format!("({expr} IS NULL AND l.id {cmp} {id})")
                }),
                (None, _) => conditions.push(format!("l.id {cmp} {id}")),
            }
        }
        let order_value = order.clone().unwrap_or_else(|| "NULL".to_owned());
        let by = match &order {
            Some(expr) => format!("{expr} {dir} {nulls}, l.id {dir}"),
            None => format!("l.id {dir}"),
        };
        let limit = q.param(i64::try_from(search.limit).unwrap_or(i64::MAX));
        let text = format!(
            "SELECT l.*, {order_value} AS order_value FROM leads l{} WHERE {} ORDER BY {by} LIMIT {limit}",
            q.text,
            conditions.join(" AND ")
        );
        let statement = sea_orm::Statement::from_sql_and_values(
            match self.backend() {
                Backend::Postgres => sea_orm::DatabaseBackend::Postgres,
                Backend::Sqlite => sea_orm::DatabaseBackend::Sqlite,
            },
            text,
            q.params,
        );
        let rows = self
            .reader()
            .query_all_raw(statement)
            .await
            .map_err(|e| self.on_reader(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let model = lead::Model::from_query_result(&row, "")?;
            let value: Option<f64> = match search.order {
                SearchOrder::Id => None,
                SearchOrder::Score { .. } => row.try_get("", "order_value")?,
                SearchOrder::EnteredStage => Some(model.entered_stage_at as f64),
                SearchOrder::Captured => Some(model.captured_at as f64),
            };
            let cursor = SearchCursor {
                value,
                id: model.id.clone(),
            };
            out.push(Found {
                record: convert::lead_record(model)?,
                cursor,
            });
        }
        Ok(out)
    }

    /// Writes the search keys of every lead (not erased) that has none —
    /// rows written before lead search — each computed under the policy
    /// version its state was computed with. Run by `migrate`, so that a
    /// search never meets a lead without keys but one whose model is newer
    /// than its last write. Returns how many were keyed.
    pub(crate) async fn key_unkeyed_leads(&self) -> Result<u64, StoreError> {
        const PAGE: i64 = 500;
        let mut policies: HashMap<(String, i64), Option<Policy>> = HashMap::new();
        let (mut after_ws, mut after_id) = (String::new(), String::new());
        let mut keyed = 0;
        loop {
            let statement = self.sql(
                "SELECT * FROM leads WHERE engagement_key IS NULL AND erased_at IS NULL \
                 AND (workspace_id > $1 OR (workspace_id = $1 AND id > $2)) \
                 ORDER BY workspace_id, id LIMIT $3",
                vec![after_ws.clone().into(), after_id.clone().into(), PAGE.into()],
            );
            // Read on the writer: the migrations just written are there.
            let rows = self.writer().query_all_raw(statement).await?;
            let n = rows.len();
            let mut leads = Vec::with_capacity(n);
            for row in rows {
                let model = lead::Model::from_query_result(&row, "")?;
                self.read_policy(&mut policies, (model.workspace_id.clone(), model.policy_version))
                    .await?;
                leads.push(model);
            }
            let tx = self.begin().await?;
            for model in leads {
                let ws = model.workspace_id.clone();
                (after_ws, after_id) = (ws.clone(), model.id.clone());
                let version = model.policy_version;
                let Some(Some(policy)) = policies.get(&(ws.clone(), version)) else {
                    tracing::warn!(workspace = %ws, lead = %after_id, version, "no readable policy version: the lead is keyed at its next write");
                    continue;
                };
                let record = match convert::lead_record(model) {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::warn!(workspace = %ws, lead = %after_id, error = %e, "an unreadable lead is not keyed");
                        continue;
                    }
                };
                if tx
                    .set_search_keys(&ws, &record.id, &record.lead.search_keys(policy))
                    .await?
                {
                    keyed += 1;
                }
            }
            tx.commit().await?;
            if n < usize::try_from(PAGE).unwrap_or(usize::MAX) {
                return Ok(keyed);
            }
        }
    }

    /// Reads a policy version into `cache` (on the writer: the migrations
    /// just written are there), `None` for one missing or unreadable.
    async fn read_policy(
        &self,
        cache: &mut HashMap<(String, i64), Option<Policy>>,
        version: (String, i64),
    ) -> Result<(), StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(version) {
            let source = policy::Entity::find_by_id(slot.key().clone())
                .one(self.writer())
                .await?
                .map(|p| p.source);
            slot.insert(source.and_then(|s| Policy::from_toml(&s).ok()));
        }
        Ok(())
    }

    /// Writes the match keys of every lead (not erased, not merged) stored
    /// before they existed, each under the `[identity]` of the policy
    /// version its state was computed with. Run by `migrate`. Returns how
    /// many leads were keyed.
    pub(crate) async fn write_match_keys(&self) -> Result<u64, StoreError> {
        const PAGE: i64 = 500;
        let mut policies: HashMap<(String, i64), Option<Policy>> = HashMap::new();
        let (mut after_ws, mut after_id) = (String::new(), String::new());
        let mut keyed = 0;
        loop {
            let statement = self.sql(
                "SELECT * FROM leads WHERE erased_at IS NULL AND stage <> 'MERGED' \
                 AND (workspace_id > $1 OR (workspace_id = $1 AND id > $2)) \
                 ORDER BY workspace_id, id LIMIT $3",
                vec![after_ws.clone().into(), after_id.clone().into(), PAGE.into()],
            );
            let rows = self.writer().query_all_raw(statement).await?;
            let n = rows.len();
            // Read before the transaction: on SQLite it holds the one writer.
            let mut keyed_leads = Vec::with_capacity(n);
            for row in rows {
                let model = lead::Model::from_query_result(&row, "")?;
                let ws = model.workspace_id.clone();
                (after_ws, after_id) = (ws.clone(), model.id.clone());
                let version = (ws.clone(), model.policy_version);
                self.read_policy(&mut policies, version.clone()).await?;
                let Ok(record) = convert::lead_record(model) else {
                    tracing::warn!(workspace = %ws, lead = %after_id, "an unreadable lead gets its match keys at its next write");
                    continue;
                };
                // Without its policy version, by its email alone.
                let keys = match policies.get(&version) {
                    Some(Some(policy)) => policy.identity.match_keys(&record.lead.profile),
                    _ => leadflow_domain::policy::Identity::default().match_keys(&record.lead.profile),
                };
                keyed_leads.push((ws, record.id, keys));
            }
            let tx = self.begin().await?;
            for (ws, id, keys) in &keyed_leads {
                let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                tx.set_match_keys(ws, id, &keys, false).await?;
                keyed += 1;
            }
            tx.commit().await?;
            if n < usize::try_from(PAGE).unwrap_or(usize::MAX) {
                return Ok(keyed);
            }
        }
    }
}
