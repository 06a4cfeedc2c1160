//! Erasing a lead: its personal data goes, its anonymous facts stay.

use leadflow_domain::{Lead, Timestamp};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait};

use crate::convert;
use crate::entity::{
    anonymous_id, assignment, engagement, idempotency, lead, lead_match_key, lead_score, level_change,
    outbox, routing_wait, score_checkpoint, sla_breach, timer, transition,
};
use crate::error::StoreError;
use crate::records::LeadRecord;
use crate::tx::{LeadLookup, Tx};

/// What erasing a lead changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub engagements: u64,
    pub events: u64,
    pub results: u64,
}

impl crate::Store {
    /// When a lead was erased and by which token, if it was.
    pub async fn erasure_of(
        &self,
        ws: &str,
        lead_id: &str,
    ) -> Result<Option<(Timestamp, Option<String>)>, StoreError> {
        Ok(lead::Entity::find_by_id((ws.to_owned(), lead_id.to_owned()))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .and_then(|row| row.erased_at.map(|at| (convert::ts(at), row.erased_by))))
    }
}

impl Tx {
    /// A lead, erased or not, locked until commit; with the instant it was
    /// erased, if it was.
    pub async fn lock_lead_even_erased(
        &self,
        ws: &str,
        key: LeadLookup<'_>,
    ) -> Result<Option<(LeadRecord, Option<Timestamp>)>, StoreError> {
        let query = lead::Entity::find().filter(lead::Column::WorkspaceId.eq(ws));
        let query = match key {
            LeadLookup::Id(id) => query.filter(lead::Column::Id.eq(id)),
            LeadLookup::ExternalKey(k) => query.filter(lead::Column::ExternalKey.eq(k)),
        };
        let Some(row) = query.lock_exclusive().one(self.db().await?).await? else {
            return Ok(None);
        };
        let erased = row.erased_at.map(convert::ts);
        Ok(Some((convert::lead_record(row)?, erased)))
    }

    /// Erases a lead's personal data in this transaction: its external key
    /// and its state as `scrubbed` (the profile emptied), the
    /// properties of its engagements, the external key in its stored
    /// events, its timers and the stored results of calls that returned it.
    /// Its stage history stays, under its opaque id.
    pub async fn erase_lead(
        &self,
        ws: &str,
        lead_id: &str,
        scrubbed: &Lead,
        now: Timestamp,
        by: Option<&str>,
    ) -> Result<Erased, StoreError> {
        let db = self.db().await?;
        let packed = crate::state::pack(lead_id, scrubbed)?;
        let profile = crate::state::profile_json(lead_id, scrubbed)?;
        lead::Entity::update_many()
            .col_expr(lead::Column::ExternalKey, Expr::value(Option::<String>::None))
            .col_expr(lead::Column::State, Expr::value(String::new()))
            .col_expr(lead::Column::PackedState, Expr::value(Some(packed)))
            .col_expr(lead::Column::Profile, Expr::value(Some(profile)))
            .col_expr(lead::Column::ErasedAt, Expr::value(now.as_micros()))
            .col_expr(lead::Column::ErasedBy, Expr::value(by.map(str::to_owned)))
            .col_expr(lead::Column::UpdatedAt, Expr::value(now.as_micros()))
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.eq(lead_id))
            .exec(db)
            .await?;
        // Its search keys go: a fit is derived from the profile.
        lead::Entity::update_many()
            .col_expr(lead::Column::EngagementKey, Expr::value(Option::<f64>::None))
            .col_expr(lead::Column::QualifyingKey, Expr::value(Option::<f64>::None))
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.eq(lead_id))
            .exec(db)
            .await?;
        lead_score::Entity::delete_many()
            .filter(lead_score::Column::WorkspaceId.eq(ws))
            .filter(lead_score::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        // Its owners' history (explanations may quote its attributes).
        assignment::Entity::delete_many()
            .filter(assignment::Column::WorkspaceId.eq(ws))
            .filter(assignment::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        routing_wait::Entity::delete_many()
            .filter(routing_wait::Column::WorkspaceId.eq(ws))
            .filter(routing_wait::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        sla_breach::Entity::delete_many()
            .filter(sla_breach::Column::WorkspaceId.eq(ws))
            .filter(sla_breach::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        // What it was found as a duplicate by: its email among them.
        lead_match_key::Entity::delete_many()
            .filter(lead_match_key::Column::WorkspaceId.eq(ws))
            .filter(lead_match_key::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        let engagements = engagement::Entity::update_many()
            .col_expr(engagement::Column::Properties, Expr::value("{}"))
            .col_expr(
                engagement::Column::AnonymousId,
                Expr::value(Option::<String>::None),
            )
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?
            .rows_affected;
        // The anonymous ids it was identified by, wherever they are kept:
        // their dropped events, the ids, the causes that name them.
        let ids = anonymous_id::Entity::find()
            .select_only()
            .column(anonymous_id::Column::AnonymousId)
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::LeadId.eq(lead_id))
            .into_query();
        engagement::Entity::delete_many()
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(crate::UNIDENTIFIED))
            .filter(engagement::Column::AnonymousId.in_subquery(ids))
            .exec(db)
            .await?;
        level_change::Entity::update_many()
            .col_expr(level_change::Column::CauseRef, Expr::value(""))
            .filter(level_change::Column::WorkspaceId.eq(ws))
            .filter(level_change::Column::LeadId.eq(lead_id))
            .filter(level_change::Column::Cause.eq("IDENTIFY"))
            .exec(db)
            .await?;
        anonymous_id::Entity::delete_many()
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        transition::Entity::update_many()
            .col_expr(transition::Column::CauseRef, Expr::value(""))
            .filter(transition::Column::WorkspaceId.eq(ws))
            .filter(transition::Column::LeadId.eq(lead_id))
            .filter(transition::Column::Cause.eq("IDENTIFY"))
            .exec(db)
            .await?;
        let mut events = 0;
        let stored: Vec<(i64, String)> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Seq)
            .column(outbox::Column::Payload)
            .filter(outbox::Column::WorkspaceId.eq(ws))
            .filter(outbox::Column::LeadId.eq(lead_id))
            .into_tuple()
            .all(db)
            .await?;
        for (seq, payload) in stored {
            let mut value: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| StoreError::corrupt("outbox", seq.to_string(), e))?;
            let identified = scrub_anonymous_ids(&mut value);
            let keyed = match value.get_mut("external_key") {
                Some(key) if !key.is_null() => {
                    *key = serde_json::Value::Null;
                    true
                }
                _ => false,
            };
            if !keyed && !identified {
                continue;
            }
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Payload, Expr::value(value.to_string()))
                .filter(outbox::Column::WorkspaceId.eq(ws))
                .filter(outbox::Column::Seq.eq(seq))
                .exec(db)
                .await?;
            events += 1;
        }
        timer::Entity::delete_many()
            .filter(timer::Column::WorkspaceId.eq(ws))
            .filter(timer::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        score_checkpoint::Entity::delete_many()
            .filter(score_checkpoint::Column::WorkspaceId.eq(ws))
            .filter(score_checkpoint::Column::LeadId.eq(lead_id))
            .exec(db)
            .await?;
        // Lead ids are UUIDs: a stored result holds one only if it returned that lead.
        let results = idempotency::Entity::delete_many()
            .filter(idempotency::Column::WorkspaceId.eq(ws))
            .filter(idempotency::Column::Response.like(format!("%{lead_id}%")))
            .exec(db)
            .await?
            .rows_affected;
        Ok(Erased {
            engagements,
            events,
            results,
        })
    }
}

/// Blanks every anonymous id a stored event names (an IDENTIFY cause):
/// whether there was one.
fn scrub_anonymous_ids(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut found = false;
            if map.get("kind").and_then(serde_json::Value::as_str) == Some("IDENTIFY")
                && let Some(id) = map.get_mut("anonymous_id")
                && id.as_str().is_some_and(|s| !s.is_empty())
            {
                *id = serde_json::Value::String(String::new());
                found = true;
            }
            for v in map.values_mut() {
                found |= scrub_anonymous_ids(v);
            }
            found
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |f, v| scrub_anonymous_ids(v) | f),
        _ => false,
    }
}
