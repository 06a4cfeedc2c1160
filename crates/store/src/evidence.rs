//! Reads for what outcomes say of a lead definition: each lead captured in
//! a period with its profile, its engagement log and its moves, a page at
//! a time.

use std::collections::HashMap;

use leadflow_domain::analytics::Period;
use leadflow_domain::analytics::evidence::Evidence;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, FromQueryResult, IsolationLevel, Statement,
    TransactionTrait, Value,
};

use crate::Store;
use crate::backend::Backend;
use crate::convert::{self, ts};
use crate::entity::{engagement, lead};
use crate::error::StoreError;

/// A page of the leads captured in the period (and not erased, unless
/// `erased`), after a cursor, in (capture instant, id) order (a subquery of
/// `ws`, `start`, `end`, the cursor's `captured_at` and `id`, and the page
/// size).
fn page(erased: bool) -> String {
    let erased = if erased { "" } else { "AND c.erased_at IS NULL " };
    format!(
        "SELECT c.id FROM leads c WHERE c.workspace_id = $1 AND c.captured_at < $3 \
         AND (c.captured_at, c.id) > ($4, $5) AND c.captured_at >= $2 \
         {erased}ORDER BY c.captured_at, c.id LIMIT $6"
    )
}

/// Where a page of evidence ends: the last lead's capture instant and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceCursor {
    captured_at: i64,
    id: String,
}

impl Store {
    /// Up to `limit` of the leads captured during `period` and not erased
    /// (an erased lead's profile and engagement details are gone; with
    /// `erased`, those too, marked), after `after`, each with its profile,
    /// engagement log and moves; and the cursor of the next page, if there
    /// may be one. Paged so that a report over a long period holds one page
    /// in memory at a time.
    pub async fn evidence(
        &self,
        ws: &str,
        period: Period,
        after: Option<&EvidenceCursor>,
        limit: u64,
        erased: bool,
    ) -> Result<(Vec<Evidence>, Option<EvidenceCursor>), StoreError> {
        let page = page(erased);
        let (after_at, after_id) = after.map_or((i64::MIN, ""), |c| (c.captured_at, c.id.as_str()));
        let params = || -> Vec<Value> {
            vec![
                ws.into(),
                period.start.as_micros().into(),
                period.end.as_micros().into(),
                after_at.into(),
                after_id.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ]
        };
        // The three reads see one snapshot: a lead captured or erased
        // meanwhile cannot shift the page between them.
        let snapshot = self.read_snapshot().await?;
        let leads = snapshot
            .query_all_raw(self.sql(
                &format!(
                    "SELECT * FROM leads WHERE workspace_id = $1 AND id IN ({page}) ORDER BY captured_at, id"
                ),
                params(),
            ))
            .await?;
        let mut out = Vec::with_capacity(leads.len());
        let mut index = HashMap::with_capacity(leads.len());
        let mut last = None;
        for row in leads {
            let model = lead::Model::from_query_result(&row, "")?;
            let erased = model.erased_at.is_some();
            last = Some(EvidenceCursor {
                captured_at: model.captured_at,
                id: model.id.clone(),
            });
            let record = convert::lead_record(model)?;
            index.insert(record.id.clone(), out.len());
            out.push(Evidence {
                lead_id: record.id,
                profile: record.lead.profile,
                log: Vec::new(),
                moves: Vec::new(),
                mql_by: None,
                erased,
            });
        }
        if out.is_empty() {
            return Ok((out, None));
        }
        let engagements = snapshot
            .query_all_raw(self.sql(
                &format!("SELECT * FROM engagements WHERE workspace_id = $1 AND lead_id IN ({page})"),
                params(),
            ))
            .await?;
        for row in engagements {
            let e = convert::engagement(engagement::Model::from_query_result(&row, "")?)?;
            if let Some(&i) = index.get(&e.lead_id) {
                out[i].log.push(e.engagement);
            }
        }
        let moves = snapshot
            .query_all_raw(self.sql(
                &format!(
                    "SELECT lead_id, seq, to_stage, \"move\" AS by, at, cause, cause_ref FROM transitions \
                     WHERE workspace_id = $1 AND lead_id IN ({page}) ORDER BY lead_id, seq"
                ),
                params(),
            ))
            .await?;
        for row in moves {
            let lead_id: String = row.try_get("", "lead_id")?;
            let key = format!("{lead_id}#{}", row.try_get::<i64>("", "seq")?);
            let to = convert::stage("transitions", &key, &row.try_get::<String>("", "to_stage")?)?;
            let by = convert::by(&key, &row.try_get::<String>("", "by")?)?;
            if let Some(&i) = index.get(&lead_id) {
                let lead = &mut out[i];
                if to == leadflow_domain::Stage::Mql && lead.mql_by.is_none() {
                    let cause: String = row.try_get("", "cause")?;
                    let cause_ref: Option<String> = row.try_get("", "cause_ref")?;
                    lead.mql_by = Some(cause_ref.filter(|_| cause == "ENGAGEMENT"));
                }
                lead.moves.push((to, by, ts(row.try_get("", "at")?)));
            }
        }
        snapshot.commit().await?;
        let next = if out.len() as u64 >= limit { last } else { None };
        Ok((out, next))
    }

    /// A read-only transaction whose statements all see one snapshot
    /// (REPEATABLE READ on PostgreSQL; any SQLite read transaction does);
    /// on PostgreSQL without JIT, which these analytic reads pay more for
    /// than they gain.
    pub(crate) async fn read_snapshot(&self) -> Result<DatabaseTransaction, StoreError> {
        let tx = match self.backend() {
            Backend::Postgres => {
                let tx = self
                    .reader()
                    .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
                    .await
                    .map_err(|e| self.on_reader(e))?;
                tx.execute_unprepared("SET LOCAL jit = off").await?;
                tx
            }
            Backend::Sqlite => self.reader().begin().await.map_err(|e| self.on_reader(e))?,
        };
        Ok(tx)
    }

    /// `sql` written with `$n` placeholders, for this store's backend (the
    /// analytics reads share it).
    pub(crate) fn sql(&self, sql: &str, values: Vec<Value>) -> Statement {
        let sql = match self.backend() {
            Backend::Postgres => sql.to_owned(),
            Backend::Sqlite => sql.replace('$', "?"),
        };
        Statement::from_sql_and_values(self.reader().get_database_backend(), sql, values)
    }
}
