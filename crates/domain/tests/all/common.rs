//! Shared helpers: the project's example policy, instants, and a harness that
//! drives `decide` the way the engine does (retrying with the log when asked),
//! keeping score checkpoints as the engine does and checking that deciding
//! from any of them gives what deciding from the whole log gives.

use std::collections::BTreeMap;

use leadflow_domain::lifecycle::ManualTransition;
use leadflow_domain::score::Checkpoint;
use leadflow_domain::workflow::{Event, TimerChange, TimerKind, Trigger};
use leadflow_domain::{
    Command, CommandKind, Context, Decision, DomainError, Engagement, Lead, Policy, Span, Stage, Timestamp,
    TransitionRecord,
};

pub(crate) fn example_toml() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.toml");
    std::fs::read_to_string(path).expect("examples/policy.toml is readable")
}

pub(crate) fn policy() -> Policy {
    Policy::from_toml(&example_toml()).expect("the example policy is valid")
}

/// The example policy with `replace` swapped for `with` (the text must be there).
pub(crate) fn policy_with(replace: &str, with: &str) -> Policy {
    let toml = example_toml();
    assert!(toml.contains(replace), "the example policy has no {replace:?}");
    Policy::from_toml(&toml.replacen(replace, with, 1)).expect("the edited policy is valid")
}

/// 2026-01-05T00:00:00Z, a Monday.
pub(crate) const T0: Timestamp = Timestamp::from_secs(1_767_571_200);

/// Two more score models besides the example's (default, analytics): `platform` (its own
/// 7-day decay and fit rule, a webinar and a trial rule) and `services`
/// (the default's decay and fit, one contact rule).
pub(crate) const MODELS: &str = r#"
[[model]]
id = "platform"
[model.decay]
half_life = "7d"

[[model]]
id = "services"

[[fit]]
id = "platform-fintech"
attribute = "industry"
equals = "fintech"
points = 40
model = "platform"

[[engagement]]
id = "platform-webinar"
type = "webinar_attended"
points = 50
model = "platform"

[[engagement]]
id = "platform-trial"
type = "trial_started"
points = 20
max_points = 40
model = "platform"

[[engagement]]
id = "services-contact"
type = "contact_requested"
points = 25
model = "services"
"#;

/// The example with [`MODELS`] added, its MQL stage reading `mql_model`.
pub(crate) fn modelled_toml(mql_model: Option<&str>) -> String {
    let mut toml = example_toml();
    if let Some(model) = mql_model {
        toml = toml.replacen(
            "[stages.MQL]\n",
            &format!("[stages.MQL]\nmodel = \"{model}\"\n"),
            1,
        );
    }
    toml + MODELS
}

pub(crate) fn modelled(mql_model: Option<&str>) -> Policy {
    Policy::from_toml(&modelled_toml(mql_model)).expect("the modelled example is valid")
}

/// Accounts on top of the example: personas, `[accounts]` (sum of the
/// default model, engaged at 20), one account fit rule and `[stages.MQA]`
/// (100 points, three engaged members, a decision maker among them).
pub(crate) const ACCOUNTS: &str = r#"
[[persona]]
id = "decision_maker"
attribute = "title"
matches = "(?i)\\b(vp|head|director|chief)\\b"

[[persona]]
id = "practitioner"
attribute = "title"
matches = "(?i)engineer|developer|analyst|\\bvp\\b"

[accounts]
ignore_domains = ["Partner-Mail.net"]
inherit = ["industry", "company_size", "country"]
engaged_at_least = 20

[[accounts.fit]]
id = "target-industry"
attribute = "industry"
one_of = ["software", "fintech"]
points = 20

[stages.MQA]
engagement_at_least = 100
engaged_members_at_least = 3
personas_required = ["decision_maker"]

[[workflow]]
id = "mqa-alert"
on = "account_entered:MQA"
emit = "sales.mqa_alert"
"#;

/// The example with [`ACCOUNTS`], `[reasons]` for accounts, and `extra`
/// TOML after it.
pub(crate) fn accounted_toml(extra: &str) -> String {
    let toml = example_toml().replacen(
        "[reasons]\n",
        "[reasons]\nreject_account = [\"not_ready\", \"no_buying_group\"]\nrecycle_account = [\"lost\", \"timing\"]\n",
        1,
    );
    format!("{toml}{ACCOUNTS}{extra}")
}

pub(crate) fn accounted(extra: &str) -> Policy {
    Policy::from_toml(&accounted_toml(extra))
        .unwrap_or_else(|e| panic!("the accounted example is valid: {e}"))
}

pub(crate) fn hours(h: i64) -> Timestamp {
    T0.saturating_add(Span::from_hours(h))
}

pub(crate) fn days(d: i64) -> Timestamp {
    T0.saturating_add(Span::from_days(d))
}

pub(crate) fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A well-fitting profile: senior title, mid-market, target industry (fit 40).
pub(crate) fn good_fit() -> BTreeMap<String, String> {
    attrs(&[
        ("email", "ann@acme.com"),
        ("company", "Acme"),
        ("title", "VP Engineering"),
        ("company_size", "250"),
        ("industry", "Software"),
    ])
}

pub(crate) fn ev(id: &str, kind: &str, at: Timestamp) -> Engagement {
    Engagement {
        event_id: id.to_owned(),
        kind: kind.to_owned(),
        channel: None,
        properties: BTreeMap::new(),
        occurred_at: at,
    }
}

pub(crate) fn page(id: &str, path: &str, at: Timestamp) -> Engagement {
    let mut e = ev(id, "page_viewed", at);
    e.properties.insert("path".to_owned(), path.to_owned());
    e
}

pub(crate) fn manual(command: CommandKind, reason: Option<&str>) -> Command {
    Command::Transition(ManualTransition {
        command,
        reason: reason.map(str::to_owned),
        actor: Some("sam@sales".to_owned()),
        deal: None,
        occurred_at: None,
    })
}

/// A lead and everything decided for it, as the engine would keep it.
pub(crate) struct Harness {
    pub(crate) policy: Policy,
    pub(crate) lead: Lead,
    pub(crate) log: Vec<Engagement>,
    pub(crate) now: Timestamp,
    pub(crate) events: Vec<Event>,
    /// Pending timers by key, as the store would hold them.
    pub(crate) timers: BTreeMap<String, leadflow_domain::workflow::Timer>,
    pub(crate) last: Option<Decision>,
    /// The lead's score states after each decision, with the scoring rules
    /// they were made under; a late engagement drops those at or after it.
    pub(crate) checkpoints: Vec<(String, Checkpoint)>,
}

/// What a score state depends on of a policy.
fn scoring_of(policy: &Policy) -> String {
    format!("{:?}", (&policy.models, &policy.event_rules))
}

impl Harness {
    pub(crate) fn capture(policy: Policy, profile: BTreeMap<String, String>, now: Timestamp) -> Self {
        let decision = leadflow_domain::capture(&policy, profile, None, &Context { now }).expect("capture");
        let mut h = Self {
            policy,
            lead: decision.lead.clone(),
            log: Vec::new(),
            now,
            events: Vec::new(),
            timers: BTreeMap::new(),
            last: None,
            checkpoints: Vec::new(),
        };
        h.absorb(decision);
        h.checkpoint();
        h
    }

    pub(crate) fn ctx(&self) -> Context {
        Context { now: self.now }
    }

    /// Decides a command like the engine: without the log first, with it if asked.
    pub(crate) fn try_decide(&mut self, command: Command) -> Result<Decision, DomainError> {
        let ctx = self.ctx();
        let decision = match leadflow_domain::decide(&self.policy, &self.lead, command.clone(), &ctx, None) {
            Err(DomainError::HistoryRequired) => {
                let full =
                    leadflow_domain::decide(&self.policy, &self.lead, command.clone(), &ctx, Some(&self.log));
                self.check_checkpoints(&command, &full);
                full
            }
            other => other,
        }?;
        let joined: &[Engagement] = match &command {
            Command::RecordEngagement(e) => std::slice::from_ref(e),
            Command::Identify { events, .. } => events,
            Command::Merge { duplicate, .. } => &duplicate.events,
            _ => &[],
        };
        let placed = matches!(command, Command::Identify { .. } | Command::Merge { .. });
        for e in joined {
            if !self.lead.lifetime.can_append(e) || placed {
                // A late engagement: the states after it changed.
                self.checkpoints
                    .retain(|(_, c)| c.key().is_none_or(|k| e.is_after(k)));
            }
            self.log.push(e.clone());
        }
        self.absorb(decision.clone());
        self.checkpoint();
        Ok(decision)
    }

    fn checkpoint(&mut self) {
        let checkpoint = Checkpoint {
            lifetime: self.lead.lifetime.clone(),
            qualifying: self.lead.qualifying.clone(),
        };
        self.checkpoints.push((scoring_of(&self.policy), checkpoint));
    }

    /// Decides `command` again from the first, the second-newest and the
    /// newest checkpoint made under the current scoring rules: each either
    /// asks for the whole log or decides exactly what `full` decided.
    fn check_checkpoints(&self, command: &Command, full: &Result<Decision, DomainError>) {
        let scoring = scoring_of(&self.policy);
        let usable: Vec<&Checkpoint> = self
            .checkpoints
            .iter()
            .filter(|(s, _)| *s == scoring)
            .map(|(_, c)| c)
            .collect();
        let n = usable.len();
        let picked = [0, n.saturating_sub(2), n.saturating_sub(1)];
        for (i, checkpoint) in usable.iter().enumerate() {
            if !picked.contains(&i) {
                continue;
            }
            let after: Vec<Engagement> = self
                .log
                .iter()
                .filter(|e| checkpoint.key().is_none_or(|k| e.is_after(k)))
                .cloned()
                .collect();
            let since = leadflow_domain::decide_since(
                &self.policy,
                &self.lead,
                command.clone(),
                &self.ctx(),
                checkpoint,
                &after,
            );
            if since != Err(DomainError::HistoryRequired) {
                assert_eq!(&since, full, "deciding from checkpoint {i} of {n}");
            }
        }
    }

    pub(crate) fn decide(&mut self, command: Command) -> Decision {
        self.try_decide(command).expect("decision")
    }

    /// Records an engagement at its own time (the wall clock follows it).
    pub(crate) fn engage(&mut self, e: Engagement) -> Decision {
        self.now = self.now.max(e.occurred_at);
        self.decide(Command::RecordEngagement(e))
    }

    fn absorb(&mut self, decision: Decision) {
        self.lead = decision.lead.clone();
        for change in &decision.timers {
            match change {
                TimerChange::Schedule(t) => {
                    self.timers.insert(t.kind.key(), t.clone());
                }
                TimerChange::Cancel(kind) => {
                    self.timers.remove(&kind.key());
                }
                TimerChange::CancelStageBound => self.timers.retain(|_, t| t.bound.is_none()),
            }
        }
        self.events.extend(decision.events.iter().cloned());
        self.last = Some(decision);
    }

    pub(crate) fn timer(&self, kind: &TimerKind) -> Option<&leadflow_domain::workflow::Timer> {
        self.timers.get(&kind.key())
    }

    /// Fires the pending timer of this kind at its due time.
    pub(crate) fn fire(&mut self, kind: &TimerKind) -> Decision {
        let timer = self.timers.remove(&kind.key()).expect("the timer is pending");
        self.now = self.now.max(timer.due_at);
        self.decide(Command::TimerFired(timer))
    }

    pub(crate) fn transitions(&self) -> Vec<&TransitionRecord> {
        transitions(&self.events)
    }

    pub(crate) fn triggers(&self) -> Vec<&Trigger> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Trigger(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn emitted(&self) -> Vec<&str> {
        self.triggers().iter().map(|t| t.emit.as_str()).collect()
    }

    pub(crate) fn stage(&self) -> Stage {
        self.lead.stage
    }
}

pub(crate) fn transitions(events: &[Event]) -> Vec<&TransitionRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transition(t) => Some(t),
            _ => None,
        })
        .collect()
}

pub(crate) fn path(decision: &Decision) -> Vec<(Option<Stage>, Stage)> {
    decision.transitions().map(|t| (t.from, t.to)).collect()
}
