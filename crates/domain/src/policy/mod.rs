//! Policies: versioned lead definitions, parsed from TOML and validated with
//! a document path, a line and a column on every error.
//!
//! The format is part of the contract: `docs/policy.md` describes every key
//! as this parser accepts it, and `examples/policy.toml` is the default
//! policy.
//!
//! - `reader`: the document with its spans, read with types; where each
//!   problem is.
//! - `grammar`: the document's tables and keys, and the [`Policy`] they make.
//! - `checks`: what one part of the document says about another.
//! - `suggestions`: "did you mean".
//! - `reach`: the warnings of a valid policy.

mod checks;
mod grammar;
mod reach;
mod reader;
mod routes;
mod rules;
mod suggestions;

use std::collections::BTreeSet;
use std::fmt;

pub use routes::{Release, Route, RouteCondition, RouteOn, RouteTarget, Routing, ScoreName};
pub use rules::{AttributeMatcher, AttributeRule, Count, EventRule, PropertyCondition};

use crate::profile::{EMAIL, MAX_MATCH_KEY_BYTES, Profile, normalised_email, normalised_value};
use crate::stage::{AccountStage, Stage};
use crate::time::Span;

/// A validated policy. Build one with [`Policy::from_toml`].
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// `None`: scores do not decay. The default model's (`[decay]`).
    pub half_life: Option<Span>,
    /// The score models: the default first (index 0, [`DEFAULT_MODEL`]),
    /// then each `[[model]]` in document order. Rules refer to them by index.
    pub models: Vec<Model>,
    /// The engagement vocabulary, in document order.
    pub engagement_types: Vec<String>,
    type_set: BTreeSet<String>,
    /// `[[fit]]` then attribute `[[undesirable]]` rules, each in document order.
    pub attribute_rules: Vec<AttributeRule>,
    /// `[[engagement]]` then event `[[undesirable]]` rules, each in document
    /// order. A lead's score state keeps one slot per rule, by index.
    pub event_rules: Vec<EventRule>,
    pub mql: MqlStage,
    pub sql: SqlStage,
    pub reasons: Reasons,
    /// Fit-score bands, highest first.
    pub grades: Vec<Grade>,
    pub slas: Vec<Sla>,
    pub workflows: Vec<Workflow>,
    /// `[[persona]]`, in document order: a lead's persona is the first that
    /// matches its profile.
    pub personas: Vec<Persona>,
    /// `[accounts]`: matching leads to accounts, account scores and the
    /// MQA stage. `None`: accounts are neither matched, scored nor moved.
    pub accounts: Option<Accounts>,
    /// `[identity]`: anonymous activity and identities.
    pub identity: Identity,
    /// `[[route]]` and `[routing]`: owners for leads.
    pub routing: Routing,
}

/// `[identity]`: how long anonymous activity is kept, and how merges go.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// `anonymous_ttl`: an anonymous event not identified this long after
    /// it was received is purged (default 90 days).
    pub anonymous_ttl: Span,
    /// `prefer_duplicate`: the attributes a merge takes from the duplicate
    /// where both leads have one (the survivor's wins on every other).
    pub prefer_duplicate: Vec<String>,
    /// `unmerge_window`: how long after a merge it can be undone (default
    /// 30 days).
    pub unmerge_window: Span,
    /// `match_attributes`: attributes that, all equal (normalised), make
    /// two leads candidate duplicates (`FindDuplicates`).
    pub match_attributes: Vec<String>,
    /// `auto_merge_on`: the matches on which a new lead is merged into the
    /// oldest lead it matches, at its capture.
    pub auto_merge_on: Vec<MatchOn>,
}

/// What two leads match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOn {
    /// The normalised email.
    Email,
    /// Every `match_attributes` attribute.
    Attributes,
}

impl MatchOn {
    /// Its name in `auto_merge_on`, and as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Attributes => "match_attributes",
        }
    }
}

impl Identity {
    pub const DEFAULT_ANONYMOUS_TTL: Span = Span::from_hours(90 * 24);
    pub const DEFAULT_UNMERGE_WINDOW: Span = Span::from_hours(30 * 24);

    /// What a lead of this `profile` is found as a duplicate by: its
    /// normalised email, and its `match_attributes` values together
    /// (normalised, in the policy's order, joined by U+001F) when it has
    /// every one. A key over [`MAX_MATCH_KEY_BYTES`] is left out.
    pub fn match_keys(&self, profile: &Profile) -> Vec<(MatchOn, String)> {
        let mut keys = Vec::with_capacity(2);
        if let Some(email) = profile.get(EMAIL).and_then(normalised_email) {
            keys.push((MatchOn::Email, email));
        }
        if !self.match_attributes.is_empty() {
            let values: Option<Vec<String>> = self
                .match_attributes
                .iter()
                .map(|a| profile.get(a).map(normalised_value).filter(|v| !v.is_empty()))
                .collect();
            if let Some(values) = values {
                keys.push((MatchOn::Attributes, values.join("\u{1f}")));
            }
        }
        keys.retain(|(_, key)| key.len() <= MAX_MATCH_KEY_BYTES);
        keys
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            anonymous_ttl: Self::DEFAULT_ANONYMOUS_TTL,
            prefer_duplicate: Vec::new(),
            unmerge_window: Self::DEFAULT_UNMERGE_WINDOW,
            match_attributes: Vec::new(),
            auto_merge_on: Vec::new(),
        }
    }
}

/// The id of the model of rules that name none.
pub const DEFAULT_MODEL: &str = "default";

/// At most this many `[[model]]` tables besides the default.
pub const MAX_MODELS: usize = 16;

/// A score model: its own engagement score (with its own half-life) and,
/// when it has fit rules, its own fit score.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub id: String,
    /// `[model.decay]`, else the policy's `[decay]`.
    pub half_life: Option<Span>,
    /// It has attribute rules (`[[fit]]` or attribute `[[undesirable]]`) of
    /// its own; without, its fit is the default model's.
    pub own_fit: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MqlStage {
    /// The model (index into `Policy::models`) whose scores the MQL
    /// thresholds and levels read.
    pub model: usize,
    pub engagement_at_least: f64,
    pub fit_at_least: f64,
    /// A grade letter from `[grades]`.
    pub grade_at_least: Option<String>,
    pub requires_attributes: Vec<String>,
    /// `[[stages.MQL.levels]]`, lowest first: each at or above the one
    /// before, the first at or above the MQL bar.
    pub levels: Vec<Level>,
}

/// A band of MQLs (`warm`, `hot`). Not a stage: a lead in MQL has the
/// highest level whose thresholds it meets, or none. A threshold a level
/// leaves out is the one of the level below (the MQL bar's for the first),
/// so every level's thresholds are all set.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub id: String,
    /// On the qualifying engagement score, as the MQL guard reads it.
    pub engagement_at_least: f64,
    pub fit_at_least: f64,
    /// A grade letter from `[grades]`.
    pub grade_at_least: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SqlStage {
    pub sales_ready_actions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reasons {
    pub reject: Vec<String>,
    pub recycle: Vec<String>,
    /// A lead's and an account's DISQUALIFY.
    pub disqualify: Vec<String>,
    /// An account's REJECT (MQA → ENGAGED).
    pub reject_account: Vec<String>,
    /// An account's RECYCLE (OPPORTUNITY → ENGAGED).
    pub recycle_account: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Grade {
    pub letter: String,
    pub at_least: f64,
}

/// The grade below every band.
pub const LOWEST_GRADE: &str = "F";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sla {
    pub id: String,
    pub stage: Stage,
    pub within: Span,
    pub kind: SlaKind,
    /// `then`: what a breach does besides its event.
    pub then: SlaAction,
}

/// What an SLA's breach does besides its `SLA_BREACHED` event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlaAction {
    /// Nothing more (no `then`).
    #[default]
    Notify,
    /// `then = "recycle"`: the lead is recycled to IQL.
    Recycle,
    /// `then = "reassign"`: the lead goes back through routing, past every
    /// owner it had in this stay.
    Reassign,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlaKind {
    /// Breach unless an engagement of this type arrives within the window.
    Until(String),
    /// Breach after the window passes with no engagement; each one restarts it.
    Idle,
}

impl Sla {
    /// Whether a breach recycles the lead.
    pub fn recycles(&self) -> bool {
        self.then == SlaAction::Recycle
    }

    /// The reason recorded on the recycle a breach causes: `idle` for an idle
    /// SLA, the SLA's id otherwise. It must be one of `[reasons] recycle`.
    pub fn recycle_reason(&self) -> &str {
        match self.kind {
            SlaKind::Idle => "idle",
            SlaKind::Until(_) => &self.id,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub id: String,
    pub on: WorkflowOn,
    pub after: Option<Span>,
    pub if_still: Option<Stage>,
    pub emit: String,
}

/// What sets a workflow off.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkflowOn {
    /// A move that ends in the stage (not a stage passed through).
    Entered(Stage),
    Rejected(String),
    Recycled(String),
    /// A model's qualifying engagement score (`None`: the default model)
    /// falls from ≥ n to < n.
    EngagementBelow(Option<String>, f64),
    /// A model's qualifying engagement score rises from ≤ n to > n.
    EngagementAbove(Option<String>, f64),
    SlaBreached(String),
    /// The lead's MQL level becomes this one (from no level, or another).
    Level(String),
}

impl fmt::Display for WorkflowOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entered(stage) => write!(f, "entered:{stage}"),
            Self::Rejected(reason) => write!(f, "rejected:{reason}"),
            Self::Recycled(reason) => write!(f, "recycled:{reason}"),
            Self::EngagementBelow(None, n) => write!(f, "engagement_below:{n}"),
            Self::EngagementAbove(None, n) => write!(f, "engagement_above:{n}"),
            Self::EngagementBelow(Some(model), n) => write!(f, "engagement_below:{model}:{n}"),
            Self::EngagementAbove(Some(model), n) => write!(f, "engagement_above:{model}:{n}"),
            Self::SlaBreached(id) => write!(f, "sla_breached:{id}"),
            Self::Level(id) => write!(f, "level:{id}"),
        }
    }
}

/// A `[[persona]]`: a role in a buying group, read from the profile like a
/// fit rule (`title` matches `(?i)\b(vp|head|director)\b` → `decision_maker`).
#[derive(Clone, Debug)]
pub struct Persona {
    pub id: String,
    pub attribute: String,
    pub matcher: AttributeMatcher,
}

impl Persona {
    pub fn matches(&self, profile: &Profile) -> bool {
        profile
            .get(&self.attribute)
            .is_some_and(|value| self.matcher.matches(value))
    }
}

/// `[accounts]`: how leads are matched to accounts, how an account is
/// scored from its members, and when it is a marketing-qualified account.
#[derive(Clone, Debug)]
pub struct Accounts {
    /// `match`: the matchers in the order they are tried; the first that
    /// applies to a lead decides.
    pub matchers: Vec<Matcher>,
    /// `ignore_domains`, lower-cased: never matched by email domain,
    /// besides the built-in free and personal mail domains.
    pub ignore_domains: BTreeSet<String>,
    /// `create`: a match that finds no account creates one.
    pub create: bool,
    /// `inherit`: profile attributes an account created by a match copies.
    pub inherit: Vec<String>,
    /// `engaged_at_least`: the qualifying engagement at which a member is engaged.
    pub engaged_at_least: f64,
    /// `promote_members_on_mqa`: entering MQA promotes the engaged members
    /// that pass the MQL guards other than the score.
    pub promote_members_on_mqa: bool,
    /// `[accounts.score]`.
    pub score: AccountScore,
    /// `[[accounts.fit]]`: rules on the account's own attributes, in
    /// document order.
    pub fit: Vec<AttributeRule>,
    /// `[stages.MQA]`.
    pub mqa: MqaStage,
    /// `[[workflow]]`s on `account_entered:<STAGE>`, in document order.
    pub workflows: Vec<AccountWorkflow>,
}

/// How a lead finds its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// `account_key`: the caller's explicit `profile.account_key`, an
    /// account's external key.
    AccountKey,
    /// `email_domain`: the lead's email domain, unless a free or ignored one.
    EmailDomain,
}

impl Matcher {
    pub const ALL: [Self; 2] = [Self::AccountKey, Self::EmailDomain];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AccountKey => "account_key",
            Self::EmailDomain => "email_domain",
        }
    }
}

/// `[accounts.score]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountScore {
    /// The model (index into `Policy::models`) whose qualifying engagement
    /// the members contribute.
    pub model: usize,
    pub aggregate: Aggregate,
}

/// How members' qualifying engagement makes the account's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Max,
    /// The sum of the N highest.
    Top(u32),
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sum => f.write_str("sum"),
            Self::Max => f.write_str("max"),
            Self::Top(n) => write!(f, "top:{n}"),
        }
    }
}

/// `[stages.MQA]`: when an account is marketing-qualified.
#[derive(Clone, Debug, PartialEq)]
pub struct MqaStage {
    /// On the account's aggregate engagement.
    pub engagement_at_least: f64,
    /// Engaged members, with a persona or without.
    pub engaged_members_at_least: u32,
    /// Personas that each need an engaged member.
    pub personas_required: Vec<String>,
    /// On the account's fit (`[[accounts.fit]]`); `None`: no fit guard.
    pub fit_at_least: Option<f64>,
}

/// A `[[workflow]]` on `account_entered:<STAGE>`: fires when an account's
/// move ends in the stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountWorkflow {
    pub id: String,
    pub stage: AccountStage,
    pub emit: String,
}

/// Every problem found in a policy document, each with its path and place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<PolicyError>);

/// One problem: where in the document (e.g. `engagement[3].type`, line 42,
/// column 3) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
    /// The value at fault, the key that does not belong, or the table that
    /// lacks a key (line 1, column 1 for the document itself). `None` only
    /// for a syntax error the TOML reader could not place.
    pub place: Option<Place>,
}

/// A position in a document: 1-based line and column, the column counted
/// in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Place {
    /// `line:column`, as editors and compilers write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Something a valid policy says that is almost certainly a mistake (see
/// [`Policy::warnings`]): the policy is still accepted. [`place_of`] finds
/// its path in the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWarning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Where `path` (an error's or a warning's) points in `source`: the value
/// at it, or a table's header. `None` when `source` is not TOML or has
/// nothing at that path.
pub fn place_of(source: &str, path: &str) -> Option<Place> {
    reader::place_of(source, path)
}

/// `source` with the value at `table.key` (a document path, as errors
/// give them: `stages.MQL.levels[1]`) set to `value`, written as TOML (a
/// number, or a quoted string); a key the table lacks is added after its
/// header. `None` when `source` is not TOML or lacks the table. The result
/// is not validated.
pub fn with_value(source: &str, table: &str, key: &str, value: &str) -> Option<String> {
    reader::with_value(source, table, key, value)
}

/// `text` as a TOML basic string, quoted and escaped.
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The document path of rule `id` in `source` (`fit[2]`, `engagement[0]`,
/// `undesirable[1]`), for [`with_value`].
pub fn rule_path(source: &str, id: &str) -> Option<String> {
    reader::rule_path(source, id)
}

impl Policy {
    /// Parses and validates a policy document, reporting every error found.
    pub fn from_toml(source: &str) -> Result<Self, PolicyErrors> {
        let root = reader::document(source).map_err(|e| PolicyErrors(vec![e]))?;
        let mut cx = reader::Cx::new(source);
        match grammar::policy(&mut cx, root.get_ref()) {
            Some(policy) if cx.errors.is_empty() => Ok(policy),
            _ => Err(PolicyErrors(cx.errors)),
        }
    }

    pub fn knows_type(&self, kind: &str) -> bool {
        self.type_set.contains(kind)
    }

    /// The closest vocabulary entry to an unknown type, for "did you mean".
    pub fn suggest_type(&self, kind: &str) -> Option<&str> {
        suggestions::closest(kind, self.engagement_types.iter().map(String::as_str))
    }

    /// The index of a model by id (`default` is the default model's).
    pub fn model_index(&self, id: &str) -> Option<usize> {
        self.models.iter().position(|m| m.id == id)
    }

    /// The model a stored name (`None`: the default) refers to.
    pub fn model_named(&self, id: Option<&str>) -> Option<usize> {
        id.map_or(Some(0), |id| self.model_index(id))
    }

    /// The model whose fit a model's fit is: its own, or the default's.
    pub fn fit_model(&self, model: usize) -> usize {
        if self.models.get(model).is_some_and(|m| m.own_fit) {
            model
        } else {
            0
        }
    }

    pub fn is_sales_ready(&self, kind: &str) -> bool {
        self.sql.sales_ready_actions.iter().any(|a| a == kind)
    }

    /// The letter for a fit score: the highest band it reaches, else `F`.
    pub fn grade(&self, fit: f64) -> &str {
        let fit = crate::num::round6(fit);
        self.grades
            .iter()
            .find(|g| fit >= g.at_least)
            .map_or(LOWEST_GRADE, |g| g.letter.as_str())
    }

    /// The fit a grade letter asks for; no letter asks for nothing.
    pub fn grade_floor(&self, letter: Option<&str>) -> f64 {
        letter
            .and_then(|l| self.grade_threshold(l))
            .unwrap_or(f64::NEG_INFINITY)
    }

    pub fn grade_threshold(&self, letter: &str) -> Option<f64> {
        self.grades
            .iter()
            .find(|g| g.letter == letter)
            .map(|g| g.at_least)
    }

    pub fn reasons_for(&self, list: ReasonList) -> &[String] {
        match list {
            ReasonList::Reject => &self.reasons.reject,
            ReasonList::Recycle => &self.reasons.recycle,
            ReasonList::Disqualify => &self.reasons.disqualify,
            ReasonList::RejectAccount => &self.reasons.reject_account,
            ReasonList::RecycleAccount => &self.reasons.recycle_account,
        }
    }

    /// A lead's persona: the first `[[persona]]` its profile matches.
    pub fn persona(&self, profile: &Profile) -> Option<&str> {
        self.personas
            .iter()
            .find(|p| p.matches(profile))
            .map(|p| p.id.as_str())
    }
}

/// Which `[reasons]` list a command's reason must come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonList {
    Reject,
    Recycle,
    Disqualify,
    RejectAccount,
    RecycleAccount,
}

impl ReasonList {
    pub const fn key(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Recycle => "recycle",
            Self::Disqualify => "disqualify",
            Self::RejectAccount => "reject_account",
            Self::RecycleAccount => "recycle_account",
        }
    }
}
