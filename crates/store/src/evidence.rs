//! Reads for what outcomes say of a lead definition: each lead captured in
//! a period with its profile, its engagement log and its moves.

use std::collections::HashMap;

use leadflow_domain::analytics::Period;
use leadflow_domain::analytics::evidence::Evidence;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement, Value};

use crate::Store;
use crate::convert::{self, ts};
use crate::db::Backend;
use crate::entity::{engagement, lead};
use crate::error::StoreError;

/// The leads captured in the period and not erased (a subquery of `ws`,
/// `start`, `end`).
const CAPTURED: &str = "SELECT c.id FROM leads c WHERE c.workspace_id = $1 AND c.captured_at >= $2 \
                        AND c.captured_at < $3 AND c.erased_at IS NULL";

impl Store {
    /// Every lead captured during `period` and not erased (an erased lead's
    /// profile and engagement details are gone), by id, with its profile,
    /// engagement log and moves.
    pub async fn evidence(&self, ws: &str, period: Period) -> Result<Vec<Evidence>, StoreError> {
        let params = || -> Vec<Value> {
            vec![
                ws.into(),
                period.start.as_micros().into(),
                period.end.as_micros().into(),
            ]
        };
        let leads = self
            .reader()
            .query_all_raw(self.sql(
                &format!("SELECT * FROM leads WHERE workspace_id = $1 AND id IN ({CAPTURED}) ORDER BY id"),
                params(),
            ))
            .await?;
        let mut out = Vec::with_capacity(leads.len());
        let mut index = HashMap::with_capacity(leads.len());
        for row in leads {
            let record = convert::lead_record(lead::Model::from_query_result(&row, "")?)?;
            index.insert(record.id.clone(), out.len());
            out.push(Evidence {
                lead_id: record.id,
                profile: record.lead.profile,
                log: Vec::new(),
                moves: Vec::new(),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        let engagements = self
            .reader()
            .query_all_raw(self.sql(
                &format!("SELECT * FROM engagements WHERE workspace_id = $1 AND lead_id IN ({CAPTURED})"),
                params(),
            ))
            .await?;
        for row in engagements {
            let e = convert::engagement(engagement::Model::from_query_result(&row, "")?)?;
            if let Some(&i) = index.get(&e.lead_id) {
                out[i].log.push(e.engagement);
            }
        }
        let moves = self
            .reader()
            .query_all_raw(self.sql(
                &format!(
                    "SELECT lead_id, seq, to_stage, \"move\" AS by, at FROM transitions \
                     WHERE workspace_id = $1 AND lead_id IN ({CAPTURED}) ORDER BY lead_id, seq"
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
                out[i].moves.push((to, by, ts(row.try_get("", "at")?)));
            }
        }
        Ok(out)
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
