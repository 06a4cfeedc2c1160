//! Reads: a lead, a page of leads, a lead's history, a score explained.

use leadflow_domain::explain::Explanation;
use leadflow_domain::{Stage, Timestamp};
use leadflow_store::EngagementCursor;

use crate::Engine;
use crate::error::EngineError;
use crate::leads::view;
use crate::model::{HistoryCursor, HistoryEntry, HistoryPage, LeadKey, LeadPage};
use crate::views::LeadView;

impl Engine {
    pub(crate) async fn find(
        &self,
        ws: &str,
        key: &LeadKey,
    ) -> Result<leadflow_store::LeadRecord, EngineError> {
        let found = match key {
            LeadKey::Id(id) => self.store.lead(ws, id).await?,
            LeadKey::ExternalKey(k) => self.store.lead_by_key(ws, k).await?,
            LeadKey::Anonymous(a) => {
                let id = self
                    .store
                    .anonymous_lead(ws, a)
                    .await?
                    .ok_or_else(|| crate::identity::not_identified(a))?;
                self.store.lead(ws, &id).await?
            }
        };
        let mut record = found.ok_or_else(|| EngineError::NotFound {
            what: "lead",
            key: key.describe(),
        })?;
        // A merged lead: by its id, MERGED_INTO; by its key, the survivor.
        for _ in 0..leadflow_store::MAX_MERGE_HOPS {
            if record.lead.stage != Stage::Merged {
                return Ok(record);
            }
            let survivor = self
                .store
                .merge_of(ws, &record.id)
                .await?
                .map(|m| m.survivor_id)
                .unwrap_or_default();
            if let LeadKey::Id(_) = key {
                return Err(EngineError::MergedInto {
                    lead_id: record.id,
                    survivor_id: survivor,
                });
            }
            record = self
                .store
                .lead(ws, &survivor)
                .await?
                .ok_or_else(|| EngineError::NotFound {
                    what: "lead",
                    key: key.describe(),
                })?;
        }
        Err(EngineError::Internal(format!(
            "{} leads through too many merges",
            key.describe()
        )))
    }

    /// A stored policy version (the one a lead was scored under, say).
    pub(crate) async fn policy_of(
        &self,
        ws: &str,
        version: i64,
    ) -> Result<std::sync::Arc<leadflow_domain::Policy>, EngineError> {
        if let Some(p) = self.cached_policy(ws, version) {
            return Ok(p);
        }
        let record =
            self.store.policy(ws, version).await?.ok_or_else(|| {
                EngineError::Internal(format!("policy version {version} of {ws:?} is missing"))
            })?;
        self.cache_policy(ws, version, &record.source)
    }

    /// A lead, with its scores decayed to now.
    #[tracing::instrument(name = "engine.get_lead", skip_all)]
    pub async fn get_lead(&self, ws: &str, key: &LeadKey) -> Result<LeadView, EngineError> {
        let record = self.find(ws, key).await?;
        let policy = self.policy_of(ws, record.policy_version).await?;
        Ok(view(&policy, record, self.now()).into())
    }

    #[tracing::instrument(name = "engine.list_leads", skip_all)]
    pub async fn list_leads(
        &self,
        ws: &str,
        stage: Option<Stage>,
        after: Option<&str>,
        page_size: u64,
    ) -> Result<LeadPage, EngineError> {
        let mut records = self.store.list_leads(ws, stage, after, page_size + 1).await?;
        let more = records.len() as u64 > page_size;
        records.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let now = self.now();
        let mut leads = Vec::with_capacity(records.len());
        for record in records {
            let policy = self.policy_of(ws, record.policy_version).await?;
            leads.push(LeadView::from(view(&policy, record, now)));
        }
        let next_after = more.then(|| leads.last().map(|l| l.id.clone())).flatten();
        Ok(LeadPage { leads, next_after })
    }

    /// Transitions, engagements, level changes and assignments merged
    /// oldest first; at one instant an engagement comes before the
    /// transitions it caused, those before level changes, and those before
    /// the changes of owner they set off.
    #[tracing::instrument(name = "engine.history", skip_all)]
    pub async fn history(
        &self,
        ws: &str,
        key: &LeadKey,
        cursor: &HistoryCursor,
        page_size: u64,
    ) -> Result<HistoryPage, EngineError> {
        let record = self.find(ws, key).await?;
        let after = cursor.engagement.as_ref().map(|(at, id)| EngagementCursor {
            occurred_at: Timestamp::from_micros(*at),
            event_id: id.clone(),
        });
        let transitions = self
            .store
            .transitions_page(ws, &record.id, cursor.transition, page_size + 1)
            .await?;
        let engagements = self
            .store
            .engagements_page(ws, &record.id, after.as_ref(), page_size + 1)
            .await?;
        let levels = self
            .store
            .level_changes_page(ws, &record.id, cursor.level, page_size + 1)
            .await?;
        let assignments = self
            .store
            .assignments_page(ws, &record.id, cursor.assignment, page_size + 1)
            .await?;
        let mut t = transitions.into_iter().peekable();
        let mut e = engagements.into_iter().peekable();
        let mut l = levels.into_iter().peekable();
        let mut a = assignments.into_iter().peekable();
        let mut entries = Vec::new();
        let mut next = cursor.clone();
        while (entries.len() as u64) < page_size {
            // The earliest head; at one instant an engagement, then a
            // transition, then a level change.
            let heads = [
                e.peek().map(|en| (en.engagement.occurred_at, 0)),
                t.peek().map(|tr| (tr.record.at, 1)),
                l.peek().map(|lc| (lc.change.at, 2)),
                a.peek().map(|asg| (asg.at, 3)),
            ];
            let Some((_, source)) = heads.into_iter().flatten().min() else {
                break;
            };
            match source {
                0 => {
                    let Some(en) = e.next() else { break };
                    next.engagement = Some((
                        en.engagement.occurred_at.as_micros(),
                        en.engagement.event_id.clone(),
                    ));
                    entries.push(HistoryEntry::Engagement(en.into()));
                }
                1 => {
                    let Some(tr) = t.next() else { break };
                    next.transition = tr.seq;
                    entries.push(HistoryEntry::Transition(tr.into()));
                }
                2 => {
                    let Some(lc) = l.next() else { break };
                    next.level = i64::try_from(lc.change.seq).unwrap_or(i64::MAX);
                    entries.push(HistoryEntry::LevelChange(lc.into()));
                }
                _ => {
                    let Some(asg) = a.next() else { break };
                    next.assignment = asg.seq;
                    entries.push(HistoryEntry::Assignment(asg));
                }
            }
        }
        let more = t.peek().is_some() || e.peek().is_some() || l.peek().is_some() || a.peek().is_some();
        Ok(HistoryPage {
            entries,
            next: more.then_some(next),
        })
    }

    /// Every rule behind the lead's scores at `as_of` (default now), under
    /// the policy version that scored it.
    #[tracing::instrument(name = "engine.explain", skip_all)]
    pub async fn explain(
        &self,
        ws: &str,
        key: &LeadKey,
        as_of: Option<Timestamp>,
    ) -> Result<(LeadView, Explanation), EngineError> {
        let record = self.find(ws, key).await?;
        let policy = self.policy_of(ws, record.policy_version).await?;
        let log = self.store.engagements_of(ws, &record.id).await?;
        let now = self.now();
        let at = as_of.unwrap_or(now);
        let explanation = leadflow_domain::explain::explain(&policy, &record.lead, &log, at);
        Ok((view(&policy, record, now).into(), explanation))
    }

    /// What the dashboard's lead page shows: the lead now, its explanation,
    /// its log, its first `moves` moves (instant and stage entered), and
    /// the policy version that scored it.
    #[tracing::instrument(name = "engine.lead_page", skip_all)]
    pub async fn lead_page(&self, ws: &str, key: &LeadKey, moves: u64) -> Result<LeadDetail, EngineError> {
        let record = self.find(ws, key).await?;
        let policy = self.policy_of(ws, record.policy_version).await?;
        let log = self.store.engagements_of(ws, &record.id).await?;
        let transitions = self.store.transitions_page(ws, &record.id, 0, moves).await?;
        let now = self.now();
        let explanation = leadflow_domain::explain::explain(&policy, &record.lead, &log, now);
        Ok(LeadDetail {
            view: view(&policy, record, now).into(),
            explanation,
            moves: transitions
                .into_iter()
                .map(|t| (t.record.at, t.record.to))
                .collect(),
            log,
            policy,
        })
    }
}

/// A lead with what explains it, for the dashboard's lead page.
#[derive(Debug)]
pub struct LeadDetail {
    pub view: LeadView,
    pub explanation: Explanation,
    pub log: Vec<leadflow_domain::Engagement>,
    pub moves: Vec<(Timestamp, Stage)>,
    pub policy: std::sync::Arc<leadflow_domain::Policy>,
}
