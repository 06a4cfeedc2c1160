//! Accounts in a write transaction: locking an account for a decision,
//! creating and updating it, its members' rows (each member's change
//! without reading the others), its transitions and the links of leads.

use leadflow_domain::Timestamp;
use leadflow_domain::account::{AccountTransition, Contribution};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::Tx;
use crate::accounts::{
    ACCOUNT_ENGAGEMENT_END, AccountLookup, AccountRecord, MemberRecord, StoredLink, account_cause_parts,
    account_record, account_row, lookup_condition, member_record, member_row,
};
use crate::backend::Backend;
use crate::entity::{account, account_link, account_member, account_promotion, account_transition, timer};
use crate::error::StoreError;

impl Tx {
    /// Reads an account and locks it until commit (on SQLite, one writer
    /// at a time needs no lock): two members' changes decide the account
    /// one after the other.
    pub async fn lock_account(
        &self,
        ws: &str,
        by: AccountLookup<'_>,
    ) -> Result<Option<AccountRecord>, StoreError> {
        let mut find = account::Entity::find().filter(lookup_condition(ws, by));
        if self.backend == Backend::Postgres {
            find = find.lock_exclusive();
        }
        find.one(self.db().await?).await?.map(account_record).transpose()
    }

    /// An account's id, unlocked (to know the order to lock two in).
    pub async fn account_id(&self, ws: &str, by: AccountLookup<'_>) -> Result<Option<String>, StoreError> {
        Ok(account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .filter(lookup_condition(ws, by))
            .into_tuple::<String>()
            .one(self.db().await?)
            .await?)
    }

    /// Inserts a new account; `false` when its external key or domain is
    /// taken (by a concurrent writer too: nothing is written then).
    pub async fn insert_account(&self, ws: &str, record: &AccountRecord) -> Result<bool, StoreError> {
        let row = account_row(ws, record)?.into_active_model().reset_all();
        let db = self.db().await?;
        // A savepoint, so that a taken key leaves the transaction usable.
        let savepoint = sea_orm::TransactionTrait::begin(db).await?;
        match account::Entity::insert(row)
            .exec_without_returning(&savepoint)
            .await
        {
            Ok(_) => {
                savepoint.commit().await?;
                Ok(true)
            }
            Err(e) => {
                let e = StoreError::from(e);
                savepoint.rollback().await?;
                if e.is_unique_violation() {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Writes an account's new state (everything but its id), and keeps its
    /// engagement-end timer at the soonest end among its engaged members as
    /// written before it in this transaction.
    pub async fn update_account(&self, ws: &str, record: &mut AccountRecord) -> Result<(), StoreError> {
        let soonest = crate::accounts::soonest_end(ws, &record.id)
            .one(self.db().await?)
            .await?
            .flatten()
            .map(crate::convert::ts);
        if soonest != record.engagement_ends_at {
            record.engagement_ends_at = soonest;
            self.set_account_timer(ws, &record.id, soonest, record.updated_at)
                .await?;
        }
        // Every column set (a model's active model has them unchanged,
        // which an update would leave out), the key as the filter.
        let mut row = account_row(ws, record)?.into_active_model().reset_all();
        row.workspace_id = sea_orm::ActiveValue::Unchanged(ws.to_owned());
        row.id = sea_orm::ActiveValue::Unchanged(record.id.clone());
        account::Entity::update(row).exec(self.db().await?).await?;
        Ok(())
    }

    /// Schedules an account's engagement-end timer at `due`, or cancels it.
    async fn set_account_timer(
        &self,
        ws: &str,
        account_id: &str,
        due: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let Some(due) = due else {
            return self.cancel_account_timer(ws, account_id).await;
        };
        let row = timer::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            lead_id: Set(account_id.to_owned()),
            key: Set(ACCOUNT_ENGAGEMENT_END.to_owned()),
            due_at: Set(due.as_micros()),
            bound_stage: Set(None),
            bound_at: Set(None),
            suppressed: Set(false),
            created_at: Set(now.as_micros()),
            traceparent: Set(None),
        };
        timer::Entity::insert(row)
            .on_conflict(super::timers::timer_upsert())
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(())
    }

    async fn cancel_account_timer(&self, ws: &str, account_id: &str) -> Result<(), StoreError> {
        timer::Entity::delete_many()
            .filter(timer::Column::WorkspaceId.eq(ws))
            .filter(timer::Column::LeadId.eq(account_id))
            .filter(timer::Column::Key.eq(ACCOUNT_ENGAGEMENT_END))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Takes an account's due engagement-end timer to fire (deleted at
    /// commit; skipped if another worker holds it): its due instant. Call
    /// with the account locked first.
    pub async fn take_account_timer(
        &self,
        ws: &str,
        account_id: &str,
    ) -> Result<Option<Timestamp>, StoreError> {
        let row = timer::Entity::find_by_id((
            ws.to_owned(),
            account_id.to_owned(),
            ACCOUNT_ENGAGEMENT_END.to_owned(),
        ))
        .lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        )
        .one(self.db().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        self.cancel_account_timer(ws, account_id).await?;
        Ok(Some(crate::convert::ts(row.due_at)))
    }

    /// A lead's membership, if it has an account.
    pub async fn member(&self, ws: &str, lead_id: &str) -> Result<Option<MemberRecord>, StoreError> {
        crate::accounts::member_of(ws, lead_id)
            .one(self.db().await?)
            .await?
            .map(member_record)
            .transpose()
    }

    /// Writes a membership (a lead has at most one account).
    pub async fn put_member(&self, ws: &str, member: &MemberRecord) -> Result<(), StoreError> {
        let row = member_row(ws, member).into_active_model().reset_all();
        account_member::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    account_member::Column::WorkspaceId,
                    account_member::Column::LeadId,
                ])
                .update_columns([
                    account_member::Column::AccountId,
                    account_member::Column::MatchedBy,
                    account_member::Column::MatchedAt,
                    account_member::Column::Persona,
                    account_member::Column::Stage,
                    account_member::Column::EnteredStageAt,
                    account_member::Column::Value,
                    account_member::Column::ValueAt,
                    account_member::Column::ScoreKey,
                    account_member::Column::Counts,
                    account_member::Column::EngagedUntil,
                    account_member::Column::Engaged,
                    // Only an erase sets it (`mark_member_erased`): a row
                    // read before a concurrent erase never clears it.
                ])
                .to_owned(),
            )
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(())
    }

    /// Marks a lead's membership erased, and nothing else of it: its part
    /// stays as the account's decisions last wrote it.
    pub async fn mark_member_erased(&self, ws: &str, lead_id: &str) -> Result<(), StoreError> {
        account_member::Entity::update_many()
            .col_expr(
                account_member::Column::Erased,
                sea_orm::sea_query::Expr::value(true),
            )
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::LeadId.eq(lead_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Removes a lead's membership.
    pub async fn delete_member(&self, ws: &str, lead_id: &str) -> Result<(), StoreError> {
        account_member::Entity::delete_many()
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::LeadId.eq(lead_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// The members counted among the engaged whose engagement ended by `t`.
    pub async fn engagement_ended(
        &self,
        ws: &str,
        account_id: &str,
        t: Timestamp,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        crate::accounts::ended_by(ws, account_id, t)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(member_record)
            .collect()
    }

    /// Marks members no longer counted among the engaged.
    pub async fn set_disengaged(&self, ws: &str, lead_ids: &[String]) -> Result<(), StoreError> {
        if lead_ids.is_empty() {
            return Ok(());
        }
        account_member::Entity::update_many()
            .col_expr(
                account_member::Column::Engaged,
                sea_orm::sea_query::Expr::value(false),
            )
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::LeadId.is_in(lead_ids.iter().map(String::as_str)))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// The `n` highest contributions of an account's counted members.
    pub async fn top_contributions(
        &self,
        ws: &str,
        account_id: &str,
        n: u64,
    ) -> Result<Vec<Contribution>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows = crate::accounts::highest(ws, account_id, n)
            .all(self.db().await?)
            .await?;
        Ok(rows.into_iter().map(crate::accounts::contribution).collect())
    }

    /// Every member of an account (a recompute: rare, and bounded by the
    /// account's size).
    pub async fn all_members(&self, ws: &str, account_id: &str) -> Result<Vec<MemberRecord>, StoreError> {
        account_member::Entity::find()
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::AccountId.eq(account_id))
            .order_by_asc(account_member::Column::LeadId)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(member_record)
            .collect()
    }

    /// The member that entered `stage` first after `after` (any time
    /// without it) and is still there.
    pub async fn first_member_in(
        &self,
        ws: &str,
        account_id: &str,
        stage: leadflow_domain::Stage,
        after: Option<Timestamp>,
    ) -> Result<Option<String>, StoreError> {
        let mut find = account_member::Entity::find()
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::AccountId.eq(account_id))
            .filter(account_member::Column::Stage.eq(stage.as_str()));
        if let Some(after) = after {
            find = find.filter(account_member::Column::EnteredStageAt.gt(after.as_micros()));
        }
        Ok(find
            .order_by_asc(account_member::Column::EnteredStageAt)
            .order_by_asc(account_member::Column::LeadId)
            .one(self.db().await?)
            .await?
            .map(|m| m.lead_id))
    }

    /// Appends an account's transitions numbered from `first_seq`.
    pub async fn insert_account_transitions(
        &self,
        ws: &str,
        account_id: &str,
        first_seq: i64,
        records: &[&AccountTransition],
        policy_version: i64,
        principal: Option<&str>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(records.len());
        for (seq, t) in (first_seq..).zip(records) {
            let (cause, cause_lead, cause_ref) = account_cause_parts(&t.cause);
            rows.push(account_transition::ActiveModel {
                workspace_id: Set(ws.to_owned()),
                account_id: Set(account_id.to_owned()),
                seq: Set(seq),
                from_stage: Set(t.from.map(|s| s.as_str().to_owned())),
                to_stage: Set(t.to.as_str().to_owned()),
                at: Set(t.at.as_micros()),
                by: Set(t.by.as_str().to_owned()),
                cause: Set(cause.to_owned()),
                cause_lead: Set(cause_lead),
                cause_ref: Set(cause_ref),
                reason: Set(t.reason.clone()),
                actor: Set(t.actor.clone()),
                engagement: Set(t.engagement),
                fit: Set(t.fit),
                engaged_members: Set(i32::try_from(t.engaged_members).unwrap_or(i32::MAX)),
                guards: Set(serde_json::to_string(&t.guards)
                    .map_err(|e| StoreError::corrupt("account_transitions", account_id, e))?),
                policy_version: Set(policy_version),
                principal: Set(principal.map(str::to_owned)),
            });
        }
        account_transition::Entity::insert_many(rows)
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(())
    }

    /// Appends a change of a lead's account to its link history, numbered
    /// after the last one.
    pub async fn insert_link(&self, ws: &str, link: &StoredLink) -> Result<i64, StoreError> {
        let db = self.db().await?;
        let last = account_link::Entity::find()
            .filter(account_link::Column::WorkspaceId.eq(ws))
            .filter(account_link::Column::LeadId.eq(&link.lead_id))
            .order_by_desc(account_link::Column::Seq)
            .one(db)
            .await?
            .map_or(0, |l| l.seq);
        let seq = last + 1;
        account_link::Entity::insert(account_link::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            lead_id: Set(link.lead_id.clone()),
            seq: Set(seq),
            from_account: Set(link.from_account.clone()),
            to_account: Set(link.to_account.clone()),
            matched_by: Set(link.matched_by.as_str().to_owned()),
            at: Set(link.at.as_micros()),
            actor: Set(link.actor.clone()),
            principal: Set(link.principal.clone()),
        })
        .exec_without_returning(db)
        .await?;
        Ok(seq)
    }

    /// The next accounts of a re-score's second phase, in id order, locked.
    pub async fn lock_accounts_after(
        &self,
        ws: &str,
        after: &str,
        limit: u64,
    ) -> Result<Vec<AccountRecord>, StoreError> {
        let mut find = account::Entity::find()
            .filter(account::Column::WorkspaceId.eq(ws))
            .filter(account::Column::Id.gt(after))
            .order_by_asc(account::Column::Id)
            .limit(limit);
        if self.backend == Backend::Postgres {
            find = find.lock_exclusive();
        }
        find.all(self.db().await?)
            .await?
            .into_iter()
            .map(account_record)
            .collect()
    }

    /// Queues the promotion of an account's engaged members (it entered MQA
    /// at `at`); a queued one starts over.
    pub async fn queue_promotion(
        &self,
        ws: &str,
        account_id: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        account_promotion::Entity::insert(account_promotion::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            account_id: Set(account_id.to_owned()),
            cursor: Set(String::new()),
            at: Set(at.as_micros()),
            created_at: Set(now.as_micros()),
        })
        .on_conflict(
            OnConflict::columns([
                account_promotion::Column::WorkspaceId,
                account_promotion::Column::AccountId,
            ])
            .update_columns([account_promotion::Column::Cursor, account_promotion::Column::At])
            .to_owned(),
        )
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    /// A queued promotion no other worker holds, locked until commit:
    /// (workspace, account, cursor, the MQA instant).
    pub async fn take_promotion(&self) -> Result<Option<(String, String, String, Timestamp)>, StoreError> {
        let mut find = account_promotion::Entity::find().order_by_asc(account_promotion::Column::CreatedAt);
        if self.backend == Backend::Postgres {
            find = find.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        Ok(find
            .one(self.db().await?)
            .await?
            .map(|p| (p.workspace_id, p.account_id, p.cursor, crate::convert::ts(p.at))))
    }

    /// Puts a promotion behind every other (one whose batch failed).
    pub async fn postpone_promotion(
        &self,
        ws: &str,
        account_id: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        account_promotion::Entity::update_many()
            .col_expr(
                account_promotion::Column::CreatedAt,
                sea_orm::sea_query::Expr::value(now.as_micros()),
            )
            .filter(account_promotion::Column::WorkspaceId.eq(ws))
            .filter(account_promotion::Column::AccountId.eq(account_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Moves a promotion on past `cursor`, or ends it (`None`).
    pub async fn advance_promotion(
        &self,
        ws: &str,
        account_id: &str,
        cursor: Option<&str>,
    ) -> Result<(), StoreError> {
        let db = self.db().await?;
        match cursor {
            None => {
                account_promotion::Entity::delete_many()
                    .filter(account_promotion::Column::WorkspaceId.eq(ws))
                    .filter(account_promotion::Column::AccountId.eq(account_id))
                    .exec(db)
                    .await?;
            }
            Some(cursor) => {
                account_promotion::Entity::update_many()
                    .col_expr(
                        account_promotion::Column::Cursor,
                        sea_orm::sea_query::Expr::value(cursor.to_owned()),
                    )
                    .filter(account_promotion::Column::WorkspaceId.eq(ws))
                    .filter(account_promotion::Column::AccountId.eq(account_id))
                    .exec(db)
                    .await?;
            }
        }
        Ok(())
    }

    /// An account's members in `stages` after `after` engaged at `now`, in
    /// lead id order.
    pub async fn engaged_members(
        &self,
        ws: &str,
        account_id: &str,
        stages: &[leadflow_domain::Stage],
        after: &str,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(account_member::Entity::find()
            .select_only()
            .column(account_member::Column::LeadId)
            .filter(account_member::Column::WorkspaceId.eq(ws))
            .filter(account_member::Column::AccountId.eq(account_id))
            .filter(account_member::Column::Engaged.eq(true))
            .filter(account_member::Column::EngagedUntil.gt(now.as_micros()))
            .filter(account_member::Column::Stage.is_in(stages.iter().map(|s| s.as_str())))
            .filter(account_member::Column::LeadId.gt(after))
            .order_by_asc(account_member::Column::LeadId)
            .limit(limit)
            .into_tuple::<String>()
            .all(self.db().await?)
            .await?)
    }

    /// A lead as last committed, without locking it (an account's member,
    /// read while the account is locked).
    pub async fn lead_unlocked(
        &self,
        ws: &str,
        id: &str,
    ) -> Result<Option<crate::records::LeadRecord>, StoreError> {
        crate::entity::lead::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .filter(crate::entity::lead::Column::ErasedAt.is_null())
            .one(self.db().await?)
            .await?
            .map(crate::convert::lead_record)
            .transpose()
    }

    /// The last change of a lead's account, if any.
    pub async fn last_link(&self, ws: &str, lead_id: &str) -> Result<Option<StoredLink>, StoreError> {
        account_link::Entity::find()
            .filter(account_link::Column::WorkspaceId.eq(ws))
            .filter(account_link::Column::LeadId.eq(lead_id))
            .order_by_desc(account_link::Column::Seq)
            .one(self.db().await?)
            .await?
            .map(crate::accounts::link)
            .transpose()
    }
}
