//! The shape of a policy document: which tables and keys it has, what each
//! holds, and how they become a [`Policy`]. Reading goes through
//! [`super::reader`]; what one part says about another is left to
//! [`super::checks`], called where the part that refers is read.

use std::collections::BTreeSet;

use regex::RegexBuilder;
use toml::de::DeValue;

use super::checks::{self, Ids};
use super::reader::{self, Cx, Loc, MAX_MAGNITUDE, Obj, Table, integer, kind_of};
use super::rules::fold;
use super::{
    AccountScore, AccountWorkflow, Accounts, Aggregate, AttributeMatcher, AttributeRule, Count,
    DEFAULT_MODEL, EventRule, Grade, Identity, LOWEST_GRADE, Level, MAX_MODELS, Matcher, Model, MqaStage,
    MqlStage, Persona, Policy, PropertyCondition, Reasons, Release, Route, RouteCondition, RouteOn,
    RouteTarget, Routing, ScoreName, Sla, SlaAction, SlaKind, SqlStage, Workflow, WorkflowOn,
};
use crate::routing::Strategy;
use crate::stage::{AccountStage, Stage};
use crate::time::Span;

const MAX_REGEX_BYTES: usize = 1 << 20;

/// The keys of a `[[fit]]` rule: its id, what it reads and how (`model`
/// last, `points` before it).
const FIT_KEYS: &[&str] = &[
    "id",
    "attribute",
    "equals",
    "one_of",
    "matches",
    "at_least",
    "at_most",
    "points",
    "model",
];

/// `[stages.MQA]` as read: where it is, and the stage when it is valid;
/// `None` when the policy has no such table.
type MqaTable = Option<(Loc, Option<MqaStage>)>;

const MQA_KEYS: &[&str] = &[
    "engagement_at_least",
    "engaged_members_at_least",
    "personas_required",
    "fit_at_least",
];

/// Reads a whole document; `None` when a part the policy cannot do without
/// is missing or wrong (the problems are in `cx`).
pub(super) fn policy(cx: &mut Cx<'_>, root: &Table<'_>) -> Option<Policy> {
    Parser { cx }.policy(root)
}

struct Parser<'c, 's> {
    cx: &'c mut Cx<'s>,
}

impl Parser<'_, '_> {
    fn policy(&mut self, root: &Table<'_>) -> Option<Policy> {
        let top = Obj::new(
            self.cx,
            Loc::root(),
            root,
            &[
                "name",
                "description",
                "decay",
                "model",
                "engagements",
                "fit",
                "engagement",
                "undesirable",
                "stages",
                "reasons",
                "grades",
                "sla",
                "workflow",
                "persona",
                "accounts",
                "identity",
                "route",
                "routing",
            ],
        );
        let name = top.name(self.cx, "name");
        let description = top.string(self.cx, "description").unwrap_or_default();
        let half_life = self.decay(&top);
        let mut models = self.models(&top, half_life);
        let engagement_types = self.vocabulary(&top);
        let types: BTreeSet<String> = engagement_types.iter().cloned().collect();

        let mut ids = Ids::new();
        let mut attribute_rules = Vec::new();
        let mut event_rules = Vec::new();
        for (at, t) in top.tables(self.cx, "fit") {
            let obj = Obj::new(self.cx, at, t, FIT_KEYS);
            if let Some(rule) = self.attribute_rule(&obj, &mut ids, &models, false) {
                attribute_rules.push(rule);
            }
        }
        for (at, t) in top.tables(self.cx, "engagement") {
            let obj = Obj::new(
                self.cx,
                at,
                t,
                &[
                    "id",
                    "type",
                    "channel",
                    "where",
                    "points",
                    "max_points",
                    "max_per_day",
                    "at_count",
                    "within",
                    "model",
                ],
            );
            if let Some(rule) = self.event_rule(&obj, &mut ids, &types, &models, false) {
                event_rules.push(rule);
            }
        }
        for (at, t) in top.tables(self.cx, "undesirable") {
            match (t.contains_key("attribute"), t.contains_key("type")) {
                (true, false) => {
                    let obj = Obj::new(
                        self.cx,
                        at,
                        t,
                        &[
                            "id", "attribute", "equals", "one_of", "matches", "at_least", "at_most",
                            "points", "disqualify", "model",
                        ],
                    );
                    if let Some(rule) = self.attribute_rule(&obj, &mut ids, &models, true) {
                        attribute_rules.push(rule);
                    }
                }
                (false, true) => {
                    let obj = Obj::new(
                        self.cx,
                        at,
                        t,
                        &[
                            "id", "type", "channel", "where", "points", "max_points", "max_per_day",
                            "at_count", "within", "disqualify", "model",
                        ],
                    );
                    if let Some(rule) = self.event_rule(&obj, &mut ids, &types, &models, true) {
                        event_rules.push(rule);
                    }
                }
                _ => self.cx.err(
                    &at,
                    "an undesirable reads either an `attribute` (profile) or a `type` (engagement), exactly one",
                ),
            }
        }

        // A rule that only disqualifies (no points) leaves the fit as it is.
        for rule in attribute_rules.iter().filter(|r| r.points != 0.0) {
            models[rule.model].own_fit = true;
        }
        let grades = self.grades(&top);
        let personas = self.personas(&top);
        let (mql, sql, mqa) = self.stages(&top, &types, &grades, &models, &personas);
        let reasons = self.reasons(&top);
        let levels = mql.as_ref().map_or(&[][..], |m| m.levels.as_slice());
        let routing = self.routing(&top, levels, &models, mqa.is_some());
        let slas = self.slas(&top, &types, &reasons, &routing);
        let mut accounts = self.accounts(&top, &models, mqa);
        let workflows = self.workflows(&top, &reasons, &slas, levels, &models, accounts.as_mut());
        let identity = self.identity(&top);

        Some(Policy {
            name: name?,
            description,
            half_life,
            models,
            engagement_types,
            type_set: types,
            attribute_rules,
            event_rules,
            mql: mql?,
            sql,
            reasons,
            grades,
            slas,
            workflows,
            personas,
            accounts,
            identity,
            routing,
        })
    }

    /// `[[route]]` and `[routing]`.
    fn routing(&mut self, top: &Obj<'_>, levels: &[Level], models: &[Model], mqa: bool) -> Routing {
        let mut routing = Routing::default();
        if let Some((at, t)) = top.table(self.cx, "routing") {
            let obj = Obj::new(self.cx, at, t, &["release_on", "reassign_on_policy_change"]);
            routing.reassign_on_policy_change =
                obj.boolean(self.cx, "reassign_on_policy_change").unwrap_or(false);
            if obj.has("release_on")
                && let Some(list) = obj.strings(self.cx, "release_on")
            {
                routing.release_on.clear();
                for (name, loc) in list {
                    match name.parse::<Release>() {
                        Ok(release) => routing.release_on.push(release),
                        Err(e) => self.cx.err(&loc, e),
                    }
                }
            }
        }
        let mut ids = Ids::new();
        for (at, t) in top.tables(self.cx, "route") {
            let obj = Obj::new(
                self.cx,
                at,
                t,
                &[
                    "id",
                    "on",
                    "when",
                    "owner",
                    "team",
                    "strategy",
                    "territory",
                    "fallback",
                    "reassign",
                    "account_owner",
                ],
            );
            let id = self.rule_id(&obj, &mut ids);
            if !obj.has("on") {
                self.cx.err(&obj.at("on"), "required");
            }
            let on = obj
                .string(self.cx, "on")
                .and_then(|text| self.route_on(&obj.at("on"), &text, levels, mqa));
            let mut when = Some(Vec::new());
            for (at, t) in obj.tables(self.cx, "when") {
                let condition = self.route_condition(at, t, models);
                match (condition, when.as_mut()) {
                    (Some(c), Some(list)) => list.push(c),
                    _ => when = None,
                }
            }
            let account_owner = obj.boolean(self.cx, "account_owner").unwrap_or(false);
            if on == Some(RouteOn::AccountMqa) {
                if let Some(list) = &when
                    && list
                        .iter()
                        .any(|c| !matches!(c, RouteCondition::AccountAttribute { .. }))
                {
                    self.cx.err(
                        &obj.at("when"),
                        "an account route reads account_attribute conditions only",
                    );
                    when = None;
                }
                if obj.has("reassign") {
                    self.cx.err(
                        &obj.at("reassign"),
                        "an account route never takes a member from its owner",
                    );
                }
                if obj.has("territory") {
                    self.cx.err(
                        &obj.at("territory"),
                        "an account route has no lead to read a territory from",
                    );
                }
            }
            let target = self.route_target(&obj, account_owner);
            let fallback = obj.has("fallback").then(|| self.owner_id(&obj, "fallback"));
            let reassign = obj.boolean(self.cx, "reassign").unwrap_or(false);
            if let (Some(id), Some(on), Some(when), Some(target), None | Some(Some(_))) =
                (id, on, when, target, &fallback)
            {
                routing.routes.push(Route {
                    id,
                    on,
                    when,
                    target,
                    account_owner,
                    fallback: fallback.flatten(),
                    reassign,
                });
            }
        }
        routing
    }

    fn route_on(&mut self, at: &Loc, text: &str, levels: &[Level], mqa: bool) -> Option<RouteOn> {
        const KINDS: &str = "entered:<IQL|MQL|SQL>, level:<id>, account_entered:MQA";
        let Some((kind, arg)) = text.split_once(':') else {
            self.cx
                .err(at, format!("unknown event {text:?} (expected one of {KINDS})"));
            return None;
        };
        let arg = arg.trim();
        match kind.trim() {
            "entered" => match arg.parse::<Stage>() {
                Ok(stage @ (Stage::Iql | Stage::Mql | Stage::Sql)) => Some(RouteOn::Entered(stage)),
                Ok(stage) => {
                    self.cx.err(
                        at,
                        format!("{stage} is not worked by an owner: a route starts on IQL, MQL or SQL"),
                    );
                    None
                }
                Err(e) => {
                    self.cx.err(at, e.to_string());
                    None
                }
            },
            "level" => checks::level(self.cx, at, arg, levels).then(|| RouteOn::Level(arg.to_owned())),
            "account_entered" if arg == "MQA" => {
                if !mqa {
                    self.cx
                        .err(at, "account_entered:MQA needs [accounts] and [stages.MQA]");
                }
                mqa.then_some(RouteOn::AccountMqa)
            }
            "account_entered" => {
                self.cx.err(
                    at,
                    format!("an account route starts on MQA, not {arg:?}: account_entered:MQA"),
                );
                None
            }
            other => {
                self.cx
                    .err(at, format!("unknown event {other:?} (expected one of {KINDS})"));
                None
            }
        }
    }

    /// A `[[route.when]]`: an `attribute` with a matcher, or a `score`
    /// with a range.
    fn route_condition(&mut self, at: Loc, t: &Table<'_>, models: &[Model]) -> Option<RouteCondition> {
        let reads = [
            t.contains_key("attribute"),
            t.contains_key("account_attribute"),
            t.contains_key("score"),
        ];
        match reads {
            [true, false, false] | [false, true, false] => {
                let key = if reads[0] {
                    "attribute"
                } else {
                    "account_attribute"
                };
                let obj = Obj::new(
                    self.cx,
                    at,
                    t,
                    &[key, "equals", "one_of", "matches", "at_least", "at_most"],
                );
                let attribute = obj.name(self.cx, key);
                let matcher = self.attribute_matcher(&obj);
                let (attribute, matcher) = (attribute?, matcher?);
                Some(if reads[0] {
                    RouteCondition::Attribute { attribute, matcher }
                } else {
                    RouteCondition::AccountAttribute { attribute, matcher }
                })
            }
            [false, false, true] => {
                let obj = Obj::new(self.cx, at, t, &["score", "model", "at_least", "at_most"]);
                let score = match obj.string(self.cx, "score").as_deref() {
                    Some("fit") => Some(ScoreName::Fit),
                    Some("engagement") => Some(ScoreName::Engagement),
                    Some("qualifying_engagement") => Some(ScoreName::QualifyingEngagement),
                    Some(other) => {
                        self.cx.err(
                            &obj.at("score"),
                            format!(
                                "unknown score {other:?} (expected fit, engagement or qualifying_engagement)"
                            ),
                        );
                        None
                    }
                    None => None,
                };
                let model = self.model(&obj, models);
                if !obj.has("at_least") && !obj.has("at_most") {
                    self.cx
                        .err(&obj.loc, "a score condition needs at_least, at_most or both");
                    return None;
                }
                let bound = |cx: &mut Cx<'_>, key: &str| -> Option<Option<f64>> {
                    if obj.has(key) {
                        obj.number(cx, key).map(Some)
                    } else {
                        Some(None)
                    }
                };
                let at_least = bound(self.cx, "at_least");
                let at_most = bound(self.cx, "at_most");
                let (at_least, at_most) = (at_least?, at_most?);
                if let (Some(lo), Some(hi)) = (at_least, at_most)
                    && lo > hi
                {
                    self.cx.err(
                        &obj.at("at_most"),
                        format!("{hi} is below at_least {lo}: nothing can match"),
                    );
                    return None;
                }
                Some(RouteCondition::Score {
                    score: score?,
                    model: model?,
                    at_least,
                    at_most,
                })
            }
            _ => {
                self.cx.err(
                    &at,
                    "a condition reads an `attribute` (profile), an `account_attribute` or a `score`, exactly one",
                );
                None
            }
        }
    }

    /// `owner = "id"`, or `team` with a `strategy` (and a `territory`);
    /// with `account_owner = true`, either may be left out.
    fn route_target(&mut self, obj: &Obj<'_>, account_owner: bool) -> Option<RouteTarget> {
        match (obj.has("owner"), obj.has("team")) {
            (true, false) => {
                for key in ["strategy", "territory"] {
                    if obj.has(key) {
                        self.cx.err(&obj.at(key), "goes with team, not with owner");
                    }
                }
                let owner = self.owner_id(obj, "owner")?;
                (!obj.has("strategy") && !obj.has("territory")).then_some(RouteTarget::Owner(owner))
            }
            (false, true) => {
                let team = obj.string(self.cx, "team").map(|t| t.trim().to_owned());
                if team.as_deref() == Some("") {
                    self.cx.err(&obj.at("team"), "must not be blank");
                }
                if !obj.has("strategy") {
                    self.cx.err(
                        &obj.at("strategy"),
                        "required with team: round_robin, weighted or least_loaded",
                    );
                }
                let strategy = obj
                    .string(self.cx, "strategy")
                    .and_then(|s| match s.parse::<Strategy>() {
                        Ok(strategy) => Some(strategy),
                        Err(e) => {
                            self.cx.err(&obj.at("strategy"), e);
                            None
                        }
                    });
                let territory = if obj.has("territory") {
                    Some(obj.name(self.cx, "territory")?)
                } else {
                    None
                };
                Some(RouteTarget::Team {
                    team: team.filter(|t| !t.is_empty())?,
                    strategy: strategy?,
                    territory,
                })
            }
            (true, true) => {
                self.cx
                    .err(&obj.loc, "takes owner = \"<id>\" or team = \"<team>\", not both");
                None
            }
            (false, false) if account_owner => {
                for key in ["strategy", "territory"] {
                    if obj.has(key) {
                        self.cx.err(&obj.at(key), "goes with team");
                    }
                }
                Some(RouteTarget::AccountOwner)
            }
            (false, false) => {
                self.cx.err(
                    &obj.loc,
                    "needs a target: owner = \"<id>\", team = \"<team>\" or account_owner = true",
                );
                None
            }
        }
    }

    /// An owner's id: as the API takes it, trimmed, at most 128 characters.
    fn owner_id(&mut self, obj: &Obj<'_>, key: &str) -> Option<String> {
        let id = obj.string(self.cx, key)?.trim().to_owned();
        if id.is_empty() {
            self.cx.err(&obj.at(key), "must not be blank");
            return None;
        }
        if id.chars().count() > crate::routing::MAX_OWNER_ID_CHARS {
            self.cx.err(
                &obj.at(key),
                format!("longer than {} characters", crate::routing::MAX_OWNER_ID_CHARS),
            );
            return None;
        }
        Some(id)
    }

    /// `[identity]`: defaults for what it leaves out.
    fn identity(&mut self, top: &Obj<'_>) -> Identity {
        let mut identity = Identity::default();
        if let Some((at, t)) = top.table(self.cx, "identity") {
            let obj = Obj::new(
                self.cx,
                at,
                t,
                &[
                    "anonymous_ttl",
                    "prefer_duplicate",
                    "unmerge_window",
                    "match_attributes",
                    "auto_merge_on",
                ],
            );
            for (key, slot) in [
                ("anonymous_ttl", &mut identity.anonymous_ttl),
                ("unmerge_window", &mut identity.unmerge_window),
            ] {
                if obj.has(key)
                    && let Some(span) = obj.duration(self.cx, key)
                {
                    if span <= Span::ZERO {
                        self.cx.err(&obj.at(key), "must be longer than 0");
                    } else {
                        *slot = span;
                    }
                }
            }
            if obj.has("prefer_duplicate")
                && let Some(list) = obj.strings(self.cx, "prefer_duplicate")
            {
                for (name, loc) in list {
                    if name == crate::profile::EMAIL_DOMAIN {
                        self.cx
                            .err(&loc, "email_domain follows the email: prefer \"email\" instead");
                    } else {
                        identity.prefer_duplicate.push(name);
                    }
                }
            }
            if obj.has("match_attributes")
                && let Some(list) = obj.strings(self.cx, "match_attributes")
            {
                if list.is_empty() {
                    self.cx
                        .err(&obj.at("match_attributes"), "name at least one attribute");
                }
                for (name, loc) in list {
                    if name == crate::profile::EMAIL_DOMAIN || name == crate::profile::EMAIL {
                        self.cx.err(
                            &loc,
                            format!("{name} is matched on its own (auto_merge_on = [\"email\"]): name other attributes"),
                        );
                    } else {
                        identity.match_attributes.push(name);
                    }
                }
            }
            if obj.has("auto_merge_on")
                && let Some(list) = obj.strings(self.cx, "auto_merge_on")
            {
                for (name, loc) in list {
                    match name.as_str() {
                        "email" => identity.auto_merge_on.push(super::MatchOn::Email),
                        "match_attributes" if !identity.match_attributes.is_empty() => {
                            identity.auto_merge_on.push(super::MatchOn::Attributes);
                        }
                        "match_attributes" => {
                            self.cx
                                .err(&loc, "match_attributes needs [identity] match_attributes");
                        }
                        other => self.cx.err(
                            &loc,
                            format!("unknown match {other:?} (expected \"email\" or \"match_attributes\")"),
                        ),
                    }
                }
            }
        }
        identity
    }

    /// A `[decay]` table (the policy's or a model's) in `obj`.
    fn decay(&mut self, obj: &Obj<'_>) -> Option<Span> {
        obj.table(self.cx, "decay").and_then(|(at, t)| {
            let decay = Obj::new(self.cx, at, t, &["half_life"]);
            if !decay.has("half_life") {
                self.cx.err(
                    &decay.at("half_life"),
                    "required (leave out [decay] for no decay)",
                );
            }
            decay.duration(self.cx, "half_life")
        })
    }

    /// The default model, then each `[[model]]`; a model without its own
    /// `[model.decay]` decays by the policy's `[decay]`.
    fn models(&mut self, top: &Obj<'_>, half_life: Option<Span>) -> Vec<Model> {
        let mut out = vec![Model {
            id: DEFAULT_MODEL.to_owned(),
            half_life,
            own_fit: false,
        }];
        let mut ids = Ids::new();
        for (at, t) in top.tables(self.cx, "model") {
            let obj = Obj::new(self.cx, at, t, &["id", "decay"]);
            let own = if obj.has("decay") {
                self.decay(&obj)
            } else {
                half_life
            };
            let Some(id) = self.rule_id(&obj, &mut ids) else {
                continue;
            };
            if id == DEFAULT_MODEL {
                self.cx.err(
                    &obj.at("id"),
                    "\"default\" is the model of rules that name none: give this model another id",
                );
                continue;
            }
            if out.len() > MAX_MODELS {
                self.cx.err(
                    &obj.loc,
                    format!("too many models: at most {MAX_MODELS} besides the default"),
                );
                break;
            }
            out.push(Model {
                id,
                half_life: own,
                own_fit: false,
            });
        }
        out
    }

    /// A rule's (or the MQL stage's) `model`: the default when left out.
    fn model(&mut self, obj: &Obj<'_>, models: &[Model]) -> Option<usize> {
        if !obj.has("model") {
            return Some(0);
        }
        let id = obj.name(self.cx, "model")?;
        checks::model(self.cx, &obj.at("model"), &id, models)
    }

    fn vocabulary(&mut self, top: &Obj<'_>) -> Vec<String> {
        let Some((at, t)) = top.table(self.cx, "engagements") else {
            if !top.has("engagements") {
                self.cx.err(
                    &top.at("engagements").key("types"),
                    "required: the engagement vocabulary",
                );
            }
            return Vec::new();
        };
        let obj = Obj::new(self.cx, at, t, &["types"]);
        if !obj.has("types") {
            self.cx
                .err(&obj.at("types"), "required: the engagement vocabulary");
        }
        let types = obj.strings(self.cx, "types").unwrap_or_default();
        for (ty, at) in &types {
            if ty.chars().any(char::is_whitespace) {
                self.cx.err(at, format!("{ty:?} must not contain spaces"));
            }
        }
        reader::texts(types)
    }

    fn rule_id(&mut self, obj: &Obj<'_>, ids: &mut Ids) -> Option<String> {
        let id = obj.name(self.cx, "id")?;
        let at = obj.at("id");
        if !is_id(&id) {
            self.cx.err(
                &at,
                format!("{id:?} is not an id: use letters, digits, '_', '-' and '.'"),
            );
            return None;
        }
        checks::unique_id(self.cx, &at, &id, ids).then_some(id)
    }

    fn points(&mut self, obj: &Obj<'_>, undesirable: bool, disqualify: bool) -> Option<f64> {
        if !obj.has("points") {
            if undesirable && disqualify {
                return Some(0.0);
            }
            self.cx.err(&obj.at("points"), "required");
            return None;
        }
        let points = obj.number(self.cx, "points")?;
        if undesirable && points > 0.0 {
            self.cx.err(
                &obj.at("points"),
                format!("an undesirable takes points away: {points} must be zero or negative"),
            );
            return None;
        }
        Some(points)
    }

    fn attribute_rule(
        &mut self,
        obj: &Obj<'_>,
        ids: &mut Ids,
        models: &[Model],
        undesirable: bool,
    ) -> Option<AttributeRule> {
        let id = self.rule_id(obj, ids);
        let model = self.model(obj, models);
        let attribute = obj.name(self.cx, "attribute");
        let disqualify = obj.boolean(self.cx, "disqualify").unwrap_or(false);
        let points = self.points(obj, undesirable, disqualify);
        let matcher = self.attribute_matcher(obj);
        Some(AttributeRule {
            id: id?,
            attribute: attribute?,
            matcher: matcher?,
            points: points?,
            undesirable,
            disqualify,
            model: model?,
        })
    }

    fn attribute_matcher(&mut self, obj: &Obj<'_>) -> Option<AttributeMatcher> {
        let given: Vec<&str> = ["equals", "one_of", "matches", "at_least", "at_most"]
            .into_iter()
            .filter(|k| obj.has(k))
            .collect();
        let is_range = !given.is_empty() && given.iter().all(|k| k.starts_with("at_"));
        if given.is_empty() || (given.len() > 1 && !is_range) {
            self.cx.err(
                &obj.loc,
                "needs exactly one of equals, one_of, matches, at_least/at_most (at_least and at_most may go together)",
            );
            return None;
        }
        match given[0] {
            "equals" => {
                let value = obj.string(self.cx, "equals")?;
                Some(AttributeMatcher::Equals(fold(&value)))
            }
            "one_of" => {
                let values = obj.strings(self.cx, "one_of")?;
                if values.is_empty() {
                    self.cx.err(&obj.at("one_of"), "must list at least one value");
                }
                Some(AttributeMatcher::OneOf(
                    values.iter().map(|(v, _)| fold(v)).collect(),
                ))
            }
            "matches" => {
                let pattern = obj.string(self.cx, "matches")?;
                match RegexBuilder::new(&pattern).size_limit(MAX_REGEX_BYTES).build() {
                    Ok(regex) => Some(AttributeMatcher::Matches(regex)),
                    Err(e) => {
                        let detail = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                        self.cx
                            .err(&obj.at("matches"), format!("bad regex {pattern:?}: {detail}"));
                        None
                    }
                }
            }
            _ => {
                let at_least = obj.number(self.cx, "at_least");
                let at_most = obj.number(self.cx, "at_most");
                if let (Some(lo), Some(hi)) = (at_least, at_most)
                    && lo > hi
                {
                    self.cx.err(
                        &obj.at("at_most"),
                        format!("{hi} is below at_least {lo}: nothing can match"),
                    );
                }
                if at_least.is_none() && at_most.is_none() {
                    return None; // the type error is already reported
                }
                Some(AttributeMatcher::Range { at_least, at_most })
            }
        }
    }

    fn engagement_type(&mut self, obj: &Obj<'_>, key: &str, types: &BTreeSet<String>) -> Option<String> {
        let ty = obj.name(self.cx, key)?;
        checks::engagement_type(self.cx, &obj.at(key), &ty, types).then_some(ty)
    }

    fn event_rule(
        &mut self,
        obj: &Obj<'_>,
        ids: &mut Ids,
        types: &BTreeSet<String>,
        models: &[Model],
        undesirable: bool,
    ) -> Option<EventRule> {
        let id = self.rule_id(obj, ids);
        let model = self.model(obj, models);
        let kind = self.engagement_type(obj, "type", types);
        let channel = obj.string(self.cx, "channel").map(|c| fold(&c));
        if channel.as_deref() == Some("") {
            self.cx.err(
                &obj.at("channel"),
                "must not be empty (leave it out to match every channel)",
            );
        }
        let conditions = obj.table(self.cx, "where").map(|(at, t)| self.conditions(&at, t));
        let disqualify = obj.boolean(self.cx, "disqualify").unwrap_or(false);
        let points = self.points(obj, undesirable, disqualify);
        let max_points = obj.number(self.cx, "max_points");
        if let Some(cap) = max_points
            && cap <= 0.0
        {
            self.cx.err(
                &obj.at("max_points"),
                format!("a cap must be positive, not {cap}"),
            );
        }
        let max_per_day = self.count(obj, "max_per_day", "a cap must be a count", 1_000_000);
        let count = self.counting(obj);
        Some(EventRule {
            id: id?,
            kind: kind?,
            channel,
            conditions: conditions.unwrap_or_else(|| Some(Vec::new()))?,
            points: points?,
            max_points,
            max_per_day,
            count: count?,
            undesirable,
            disqualify,
            model: model?,
        })
    }

    /// A whole number from 1 to `max` at `key`, if written; out of range,
    /// the message starts with `what`.
    fn count(&mut self, obj: &Obj<'_>, key: &str, what: &str, max: i64) -> Option<u32> {
        match obj.get(key)? {
            DeValue::Integer(n) => match integer(n) {
                Some(n) if (1..=max).contains(&n) => u32::try_from(n).ok(),
                written => {
                    let n = written.map_or_else(|| n.to_string(), |n| n.to_string());
                    self.cx
                        .err(&obj.at(key), format!("{what} from 1 to {max}, not {n}"));
                    None
                }
            },
            other => {
                self.cx.err(
                    &obj.at(key),
                    format!("expected a whole number, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    /// `at_count` and `within`: `Some(None)` for an ordinary rule, `None`
    /// when either is wrong (reported).
    fn counting(&mut self, obj: &Obj<'_>) -> Option<Option<Count>> {
        let within = obj.has("within").then(|| obj.duration(self.cx, "within"));
        if !obj.has("at_count") {
            if within.is_some() {
                self.cx.err(
                    &obj.at("within"),
                    "a window needs a count: add at_count = N (the rule fires at the Nth matching event within it)",
                );
                return None;
            }
            return Some(None);
        }
        let at = self.count(obj, "at_count", "expected a count", 1_000);
        match within {
            Some(None) => None,
            Some(Some(within)) => Some(Some(Count {
                at: at?,
                within: Some(within),
            })),
            None => Some(Some(Count {
                at: at?,
                within: None,
            })),
        }
    }

    fn conditions(&mut self, at: &Loc, table: &Table<'_>) -> Option<Vec<PropertyCondition>> {
        let obj = Obj::named(at.clone(), table);
        let mut out = Vec::with_capacity(table.len());
        let mut ok = true;
        for (key, at, node) in obj.entries() {
            if reader::has_control(key) || key.trim().is_empty() {
                self.cx.err(&obj.key_at(key), "not a property name");
                ok = false;
                continue;
            }
            let numeric = key
                .strip_suffix("_at_least")
                .map(|p| (p, true))
                .or_else(|| key.strip_suffix("_at_most").map(|p| (p, false)));
            // A number under `_at_least`/`_at_most` is a bound; a string
            // there keeps its older meaning, equality on the key itself.
            if let Some((property, at_least)) = numeric
                && matches!(node.get_ref(), DeValue::Integer(_) | DeValue::Float(_))
            {
                if property.trim().is_empty() {
                    self.cx.err(&obj.key_at(key), "not a property name");
                    ok = false;
                    continue;
                }
                let Some(bound) = obj.number(self.cx, key) else {
                    ok = false;
                    continue;
                };
                let property = property.to_owned();
                out.push(if at_least {
                    PropertyCondition::AtLeast { property, bound }
                } else {
                    PropertyCondition::AtMost { property, bound }
                });
                continue;
            }
            let condition = if let Some(property) = key.strip_suffix("_one_of") {
                reader::strings(self.cx, &at, node).map(|values| PropertyCondition::OneOf {
                    property: property.to_owned(),
                    values: values.iter().map(|(v, _)| fold(v)).collect(),
                })
            } else {
                let DeValue::String(text) = node.get_ref() else {
                    let expected = if numeric.is_some() {
                        "a number (a bound) or a string (equality)"
                    } else {
                        "a string"
                    };
                    self.cx.err(
                        &at,
                        format!("expected {expected}, found {}", kind_of(node.get_ref())),
                    );
                    ok = false;
                    continue;
                };
                match key.strip_suffix("_prefix") {
                    Some(property) => Some(PropertyCondition::Prefix {
                        property: property.to_owned(),
                        prefix: text.trim().to_owned(),
                    }),
                    None => Some(PropertyCondition::Equals {
                        property: key.to_owned(),
                        value: fold(text),
                    }),
                }
            };
            match condition {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        for (property, low) in out.iter().filter_map(|c| match c {
            PropertyCondition::AtLeast { property, bound } => Some((property, *bound)),
            _ => None,
        }) {
            let high = out.iter().find_map(|c| match c {
                PropertyCondition::AtMost { property: p, bound } if p == property && *bound < low => {
                    Some(*bound)
                }
                _ => None,
            });
            if let Some(high) = high {
                self.cx.err(
                    &obj.key_at(&format!("{property}_at_most")),
                    format!("{property} can never be at least {low} and at most {high}: the rule would never match"),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    fn grades(&mut self, top: &Obj<'_>) -> Vec<Grade> {
        let Some((at, t)) = top.table(self.cx, "grades") else {
            return Vec::new();
        };
        let obj = Obj::named(at, t);
        let mut grades: Vec<Grade> = Vec::with_capacity(t.len());
        for (key, at, _) in obj.entries() {
            if !is_id(key) {
                self.cx.err(
                    &obj.key_at(key),
                    format!("{key:?} is not a grade name: use letters, digits, '_', '-' and '.'"),
                );
                continue;
            }
            if key == LOWEST_GRADE {
                self.cx.err(
                    &obj.key_at(key),
                    "F is the grade below every band and cannot be set",
                );
                continue;
            }
            let Some(at_least) = obj.number(self.cx, key) else {
                continue;
            };
            if let Some(other) = grades.iter().find(|g| g.at_least == at_least) {
                self.cx.err(
                    &at,
                    format!("same threshold {at_least} as grade {}", other.letter),
                );
                continue;
            }
            grades.push(Grade {
                letter: key.to_owned(),
                at_least,
            });
        }
        grades.sort_by(|a, b| b.at_least.total_cmp(&a.at_least));
        grades
    }

    fn stages(
        &mut self,
        top: &Obj<'_>,
        types: &BTreeSet<String>,
        grades: &[Grade],
        models: &[Model],
        personas: &[Persona],
    ) -> (Option<MqlStage>, SqlStage, MqaTable) {
        let Some((at, t)) = top.table(self.cx, "stages") else {
            if !top.has("stages") {
                self.cx
                    .err(&top.at("stages").key("MQL"), "required: the MQL thresholds");
            }
            return (None, SqlStage::default(), None);
        };
        let stages = Obj::new(self.cx, at, t, &["MQL", "SQL", "MQA"]);
        let mql = match stages.table(self.cx, "MQL") {
            None => {
                if !stages.has("MQL") {
                    self.cx.err(&stages.at("MQL"), "required: the MQL thresholds");
                }
                None
            }
            Some((at, t)) => {
                let obj = Obj::new(
                    self.cx,
                    at,
                    t,
                    &[
                        "engagement_at_least",
                        "fit_at_least",
                        "grade_at_least",
                        "requires_attributes",
                        "levels",
                        "model",
                    ],
                );
                let model = self.model(&obj, models);
                let engagement = self.threshold(&obj, "engagement_at_least");
                let fit = self.threshold(&obj, "fit_at_least");
                let grade = obj.string(self.cx, "grade_at_least");
                let grade =
                    grade.filter(|letter| checks::grade(self.cx, &obj.at("grade_at_least"), letter, grades));
                let requires = obj.strings(self.cx, "requires_attributes").unwrap_or_default();
                let bar = Level {
                    id: "MQL".to_owned(),
                    engagement_at_least: engagement.unwrap_or(0.0),
                    fit_at_least: fit.unwrap_or(0.0),
                    grade_at_least: grade,
                };
                let levels = self.levels(&obj, &bar, grades);
                Some(MqlStage {
                    model: model.unwrap_or(0),
                    engagement_at_least: bar.engagement_at_least,
                    fit_at_least: bar.fit_at_least,
                    grade_at_least: bar.grade_at_least,
                    requires_attributes: reader::texts(requires),
                    levels,
                })
            }
        };
        let sql = match stages.table(self.cx, "SQL") {
            None => SqlStage::default(),
            Some((at, t)) => {
                let obj = Obj::new(self.cx, at, t, &["sales_ready_actions"]);
                let actions = obj.strings(self.cx, "sales_ready_actions").unwrap_or_default();
                let actions = actions
                    .into_iter()
                    .filter(|(a, at)| checks::engagement_type(self.cx, at, a, types))
                    .map(|(a, _)| a)
                    .collect();
                SqlStage {
                    sales_ready_actions: actions,
                }
            }
        };
        let mqa = stages.table(self.cx, "MQA").map(|(at, t)| {
            let obj = Obj::new(self.cx, at.clone(), t, MQA_KEYS);
            (at, self.mqa(&obj, personas))
        });
        (mql, sql, mqa)
    }

    /// `[stages.MQA]`, read against the personas.
    fn mqa(&mut self, obj: &Obj<'_>, personas: &[Persona]) -> Option<MqaStage> {
        let engagement = self.threshold(obj, "engagement_at_least");
        let members = if obj.has("engaged_members_at_least") {
            match obj.get("engaged_members_at_least") {
                Some(DeValue::Integer(n)) if integer(n) == Some(0) => Some(0),
                _ => self.count(obj, "engaged_members_at_least", "a count of members", 100_000),
            }
        } else {
            Some(1)
        };
        let required = obj.strings(self.cx, "personas_required").unwrap_or_default();
        let mut ok = true;
        for (id, at) in &required {
            ok &= checks::persona(self.cx, at, id, personas);
        }
        let fit = obj
            .has("fit_at_least")
            .then(|| obj.number(self.cx, "fit_at_least"));
        Some(MqaStage {
            engagement_at_least: engagement?,
            engaged_members_at_least: members?,
            personas_required: ok.then(|| reader::texts(required))?,
            fit_at_least: match fit {
                None => None,
                Some(n) => Some(n?),
            },
        })
    }

    /// `[[persona]]`, each read like an attribute rule without points.
    fn personas(&mut self, top: &Obj<'_>) -> Vec<Persona> {
        let mut out = Vec::new();
        let mut ids = Ids::new();
        for (at, t) in top.tables(self.cx, "persona") {
            // A persona is a fit rule's match without points.
            let obj = Obj::new(self.cx, at, t, &FIT_KEYS[..7]);
            let id = self.rule_id(&obj, &mut ids);
            let attribute = obj.name(self.cx, "attribute");
            let matcher = self.attribute_matcher(&obj);
            if let (Some(id), Some(attribute), Some(matcher)) = (id, attribute, matcher) {
                out.push(Persona {
                    id,
                    attribute,
                    matcher,
                });
            }
        }
        out
    }

    /// `[accounts]`, with `[stages.MQA]` as read (`None`: no such table).
    fn accounts(&mut self, top: &Obj<'_>, models: &[Model], mqa: MqaTable) -> Option<Accounts> {
        let Some((at, t)) = top.table(self.cx, "accounts") else {
            if let Some((at, _)) = mqa {
                self.cx.err(
                    &at,
                    "an MQA is a marketing-qualified account: add [accounts] (how leads find their account) or leave out [stages.MQA]",
                );
            }
            return None;
        };
        let obj = Obj::new(
            self.cx,
            at,
            t,
            &[
                "match",
                "ignore_domains",
                "create",
                "inherit",
                "engaged_at_least",
                "promote_members_on_mqa",
                "score",
                "fit",
            ],
        );
        let matchers = match obj.strings(self.cx, "match") {
            None => Some(Matcher::ALL.to_vec()),
            Some(names) => names
                .into_iter()
                .map(|(name, at)| {
                    let found = Matcher::ALL.into_iter().find(|m| m.as_str() == name);
                    if found.is_none() {
                        self.cx.err(
                            &at,
                            format!("unknown matcher {name:?} (expected account_key or email_domain)"),
                        );
                    }
                    found
                })
                .collect::<Option<Vec<_>>>(),
        };
        let mut ignore = BTreeSet::new();
        for (domain, at) in obj.strings(self.cx, "ignore_domains").unwrap_or_default() {
            let folded = domain.trim().to_lowercase();
            if folded.contains('@') || folded.chars().any(char::is_whitespace) || !folded.contains('.') {
                self.cx
                    .err(&at, format!("{domain:?} is not a domain (e.g. \"example.com\")"));
            } else {
                ignore.insert(folded);
            }
        }
        let create = obj.boolean(self.cx, "create").unwrap_or(true);
        let inherit = reader::texts(obj.strings(self.cx, "inherit").unwrap_or_default());
        let engaged = self.threshold(&obj, "engaged_at_least").filter(|&n| {
            if n <= 0.0 {
                self.cx.err(
                    &obj.at("engaged_at_least"),
                    "must be more than zero: a member with no engagement is not engaged",
                );
            }
            n > 0.0
        });
        let promote = obj.boolean(self.cx, "promote_members_on_mqa").unwrap_or(false);
        let score = match obj.table(self.cx, "score") {
            None => Some(AccountScore {
                model: 0,
                aggregate: Aggregate::Sum,
            }),
            Some((at, t)) => {
                let score = Obj::new(self.cx, at, t, &["aggregate", "model"]);
                let model = self.model(&score, models);
                let aggregate = match score.string(self.cx, "aggregate") {
                    None => Some(Aggregate::Sum),
                    Some(text) => self.aggregate(&score.at("aggregate"), &text),
                };
                model
                    .zip(aggregate)
                    .map(|(model, aggregate)| AccountScore { model, aggregate })
            }
        };
        let mut ids = Ids::new();
        let mut fit = Vec::new();
        for (at, t) in obj.tables(self.cx, "fit") {
            // An account's fit rules score no model.
            let rule = Obj::new(self.cx, at, t, &FIT_KEYS[..FIT_KEYS.len() - 1]);
            if let Some(rule) = self.attribute_rule(&rule, &mut ids, models, false) {
                fit.push(rule);
            }
        }
        let mqa = match mqa {
            Some((at, mqa)) => {
                if mqa.as_ref().is_some_and(|m| m.fit_at_least.is_some()) && fit.is_empty() {
                    self.cx.err(
                        &at.key("fit_at_least"),
                        "an account's fit comes from [[accounts.fit]] rules, and there are none",
                    );
                }
                mqa
            }
            None => {
                self.cx.err(
                    &top.at("stages").key("MQA"),
                    "required with [accounts]: when an account is marketing-qualified",
                );
                None
            }
        };
        Some(Accounts {
            matchers: matchers?,
            ignore_domains: ignore,
            create,
            inherit,
            engaged_at_least: engaged?,
            promote_members_on_mqa: promote,
            score: score?,
            fit,
            mqa: mqa?,
            workflows: Vec::new(),
        })
    }

    /// `sum`, `max` or `top:N`.
    fn aggregate(&mut self, at: &Loc, text: &str) -> Option<Aggregate> {
        match text.trim() {
            "sum" => Some(Aggregate::Sum),
            "max" => Some(Aggregate::Max),
            other => {
                let n = other
                    .strip_prefix("top:")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .filter(|n| (1..=1_000).contains(n));
                if n.is_none() {
                    self.cx.err(
                        at,
                        format!(
                            "unknown aggregate {other:?} (expected sum, max or top:N with N from 1 to 1000)"
                        ),
                    );
                }
                n.map(Aggregate::Top)
            }
        }
    }

    /// `[[stages.MQL.levels]]`, each resolved against the one below (`bar`
    /// for the first): unset thresholds are inherited, set ones may not be
    /// lower, and each level must ask for more than the one below.
    fn levels(&mut self, mql: &Obj<'_>, bar: &Level, grades: &[Grade]) -> Vec<Level> {
        let grade_floor = |letter: Option<&str>| {
            letter
                .and_then(|l| grades.iter().find(|g| g.letter == l))
                .map_or(f64::NEG_INFINITY, |g| g.at_least)
        };
        let mut out: Vec<Level> = Vec::new();
        let mut ids = Ids::new();
        let mut below_in_error = false;
        for (at, t) in mql.tables(self.cx, "levels") {
            let obj = Obj::new(
                self.cx,
                at,
                t,
                &["id", "engagement_at_least", "fit_at_least", "grade_at_least"],
            );
            let id = self.rule_id(&obj, &mut ids);
            let below = out.last().unwrap_or(bar);
            // Measured against a level in error, this one would be too.
            let judged = !below_in_error;
            let what = if out.is_empty() {
                "the MQL bar".to_owned()
            } else {
                format!("level {}", below.id)
            };
            if !["engagement_at_least", "fit_at_least", "grade_at_least"]
                .iter()
                .any(|k| obj.has(k))
            {
                self.cx.err(
                    &obj.loc,
                    "a level needs at least one of engagement_at_least, fit_at_least, grade_at_least",
                );
                continue;
            }
            let mut ok = true;
            let mut number = |cx: &mut Self, key: &str, inherited: f64| match obj
                .has(key)
                .then(|| cx.threshold(&obj, key))
            {
                None => inherited,
                Some(None) => {
                    ok = false;
                    inherited
                }
                Some(Some(n)) if n < inherited && judged => {
                    cx.cx.err(
                        &obj.at(key),
                        format!("{n} is below {what}'s {inherited}: levels go from the MQL bar upwards"),
                    );
                    ok = false;
                    inherited
                }
                Some(Some(n)) => n,
            };
            let engagement = number(self, "engagement_at_least", below.engagement_at_least);
            let fit = number(self, "fit_at_least", below.fit_at_least);
            let grade = match obj.string(self.cx, "grade_at_least") {
                None => below.grade_at_least.clone(),
                Some(letter) if !checks::grade(self.cx, &obj.at("grade_at_least"), &letter, grades) => {
                    ok = false;
                    None
                }
                Some(letter)
                    if judged
                        && grade_floor(Some(&letter)) < grade_floor(below.grade_at_least.as_deref()) =>
                {
                    let inherited = below.grade_at_least.as_deref().unwrap_or_default();
                    self.cx.err(
                        &obj.at("grade_at_least"),
                        format!("{letter} is below {what}'s {inherited}: levels go from the MQL bar upwards"),
                    );
                    ok = false;
                    None
                }
                Some(letter) => Some(letter),
            };
            // A level in error is kept (the policy is refused anyway), so
            // that workflows on it are not reported as naming no level.
            let Some(id) = id else { continue };
            let level = Level {
                id,
                engagement_at_least: engagement,
                fit_at_least: fit,
                grade_at_least: grade,
            };
            let same = level.engagement_at_least == below.engagement_at_least
                && level.fit_at_least == below.fit_at_least
                && grade_floor(level.grade_at_least.as_deref())
                    == grade_floor(below.grade_at_least.as_deref());
            if same && ok && judged {
                self.cx.err(
                    &obj.loc,
                    format!("asks for no more than {what}: a lead would always be at both"),
                );
            }
            below_in_error = !ok;
            out.push(level);
        }
        out
    }

    fn threshold(&mut self, obj: &Obj<'_>, key: &str) -> Option<f64> {
        if !obj.has(key) {
            self.cx.err(&obj.at(key), "required");
            return None;
        }
        let n = obj.number(self.cx, key)?;
        if n < 0.0 {
            self.cx
                .err(&obj.at(key), format!("a threshold must be zero or more, not {n}"));
            return None;
        }
        Some(n)
    }

    fn reasons(&mut self, top: &Obj<'_>) -> Reasons {
        let Some((at, t)) = top.table(self.cx, "reasons") else {
            return Reasons::default();
        };
        let obj = Obj::new(
            self.cx,
            at,
            t,
            &[
                "reject",
                "recycle",
                "disqualify",
                "reject_account",
                "recycle_account",
            ],
        );
        let mut list = |key| reader::texts(obj.strings(self.cx, key).unwrap_or_default());
        Reasons {
            reject: list("reject"),
            recycle: list("recycle"),
            disqualify: list("disqualify"),
            reject_account: list("reject_account"),
            recycle_account: list("recycle_account"),
        }
    }

    fn slas(
        &mut self,
        top: &Obj<'_>,
        types: &BTreeSet<String>,
        reasons: &Reasons,
        routing: &Routing,
    ) -> Vec<Sla> {
        let Some((at, t)) = top.table(self.cx, "sla") else {
            return Vec::new();
        };
        let sections = Obj::named(at, t);
        let mut out = Vec::with_capacity(t.len());
        for (id, at, node) in sections.entries() {
            if !is_id(id) {
                self.cx.err(
                    &sections.key_at(id),
                    format!("{id:?} is not an id: use letters, digits, '_', '-' and '.'"),
                );
                continue;
            }
            let DeValue::Table(t) = node.get_ref() else {
                self.cx.err(
                    &at,
                    format!("expected a table ([sla.{id}]), found {}", kind_of(node.get_ref())),
                );
                continue;
            };
            let obj = Obj::new(self.cx, at, t, &["stage", "within", "until", "idle", "then"]);
            if !obj.has("stage") {
                self.cx.err(&obj.at("stage"), "required");
            }
            if !obj.has("within") {
                self.cx.err(&obj.at("within"), "required");
            }
            let stage = obj.stage(self.cx, "stage");
            if let Some(s @ (Stage::Customer | Stage::Disqualified)) = stage {
                self.cx.err(
                    &obj.at("stage"),
                    format!("{s} is an end state: a lead there has nothing left to do in time"),
                );
            }
            let within = obj.duration(self.cx, "within");
            let until = obj
                .has("until")
                .then(|| self.engagement_type(&obj, "until", types));
            let idle = obj.boolean(self.cx, "idle").unwrap_or(false);
            let kind = match (until, idle) {
                (Some(Some(ty)), false) => Some(SlaKind::Until(ty)),
                (None, true) => Some(SlaKind::Idle),
                (Some(None), false) => None, // reported
                (Some(_), true) => {
                    self.cx
                        .err(&obj.loc, "takes until = \"<type>\" or idle = true, not both");
                    None
                }
                (None, false) => {
                    self.cx.err(&obj.loc, "needs until = \"<type>\" or idle = true");
                    None
                }
            };
            let then = match obj.string(self.cx, "then").as_deref() {
                None => SlaAction::Notify,
                Some("recycle") => SlaAction::Recycle,
                Some("reassign") => SlaAction::Reassign,
                Some(other) => {
                    self.cx.err(
                        &obj.at("then"),
                        format!("unknown action {other:?} (one of \"recycle\", \"reassign\")"),
                    );
                    SlaAction::Notify
                }
            };
            let (Some(stage), Some(within), Some(kind)) = (stage, within, kind) else {
                continue;
            };
            let sla = Sla {
                id: id.to_owned(),
                stage,
                within,
                kind,
                then,
            };
            match then {
                SlaAction::Recycle => checks::sla_recycle(self.cx, &obj.at("then"), &sla, reasons),
                SlaAction::Reassign => checks::sla_reassign(self.cx, &obj.at("then"), &sla, routing),
                SlaAction::Notify => {}
            }
            out.push(sla);
        }
        out
    }

    fn workflows(
        &mut self,
        top: &Obj<'_>,
        reasons: &Reasons,
        slas: &[Sla],
        levels: &[Level],
        models: &[Model],
        mut accounts: Option<&mut Accounts>,
    ) -> Vec<Workflow> {
        let mut out = Vec::new();
        let mut ids = Ids::new();
        for (at, t) in top.tables(self.cx, "workflow") {
            let obj = Obj::new(self.cx, at, t, &["id", "on", "after", "if_still", "emit"]);
            let id = self.rule_id(&obj, &mut ids);
            if !obj.has("on") {
                self.cx.err(&obj.at("on"), "required");
            }
            if let Some(DeValue::String(on)) = obj.get("on")
                && let Some((kind, stage)) = on.split_once(':')
                && kind.trim() == "account_entered"
            {
                let emit = obj.name(self.cx, "emit");
                let workflow = self.account_workflow(&obj, stage.trim(), accounts.is_some());
                if let (Some(id), Some(stage), Some(emit), Some(accounts)) =
                    (id, workflow, emit, accounts.as_deref_mut())
                {
                    accounts.workflows.push(AccountWorkflow { id, stage, emit });
                }
                continue;
            }
            let on = obj
                .string(self.cx, "on")
                .and_then(|text| self.workflow_on(&obj.at("on"), &text, reasons, slas, levels, models));
            let after = obj.duration(self.cx, "after");
            let if_still = obj.stage(self.cx, "if_still");
            let emit = obj.name(self.cx, "emit");
            if let (Some(on), Some(_), Some(still)) = (&on, after, if_still) {
                checks::can_fire(self.cx, &obj.at("if_still"), on, still, slas);
            }
            if let (Some(id), Some(on), Some(emit)) = (id, on, emit) {
                out.push(Workflow {
                    id,
                    on,
                    after,
                    if_still,
                    emit,
                });
            }
        }
        out
    }

    /// An `account_entered:<STAGE>` workflow's stage: it fires when the
    /// account's move ends there, at once (`after` and `if_still` are a
    /// lead's).
    fn account_workflow(&mut self, obj: &Obj<'_>, stage: &str, accounts: bool) -> Option<AccountStage> {
        for key in ["after", "if_still"] {
            if obj.has(key) {
                self.cx.err(
                    &obj.at(key),
                    "an account_entered workflow fires when the account enters the stage: leave out after and if_still",
                );
            }
        }
        if !accounts {
            self.cx.err(
                &obj.at("on"),
                "account_entered needs [accounts]: without it accounts are not moved",
            );
        }
        match stage.parse::<AccountStage>() {
            Ok(stage) => (accounts && !obj.has("after") && !obj.has("if_still")).then_some(stage),
            Err(e) => {
                self.cx.err(&obj.at("on"), e.to_string());
                None
            }
        }
    }

    fn workflow_on(
        &mut self,
        at: &Loc,
        text: &str,
        reasons: &Reasons,
        slas: &[Sla],
        levels: &[Level],
        models: &[Model],
    ) -> Option<WorkflowOn> {
        const KINDS: &str = "entered:<STAGE>, rejected:<reason>, recycled:<reason>, engagement_below:[<model>:]<n>, engagement_above:[<model>:]<n>, sla_breached:<id>, level:<id>, account_entered:<ACCOUNT_STAGE>";
        let Some((kind, arg)) = text.split_once(':') else {
            self.cx
                .err(at, format!("unknown event {text:?} (expected one of {KINDS})"));
            return None;
        };
        let arg = arg.trim();
        match kind.trim() {
            "entered" => match arg.parse::<Stage>() {
                Ok(Stage::Merged) => {
                    self.cx.err(
                        at,
                        "MERGED is entered only by a merge: a workflow cannot start on it",
                    );
                    None
                }
                Ok(stage) => Some(WorkflowOn::Entered(stage)),
                Err(e) => {
                    self.cx.err(at, e.to_string());
                    None
                }
            },
            "rejected" => checks::reason(self.cx, at, arg, &reasons.reject, "reject")
                .then(|| WorkflowOn::Rejected(arg.to_owned())),
            "recycled" => checks::reason(self.cx, at, arg, &reasons.recycle, "recycle")
                .then(|| WorkflowOn::Recycled(arg.to_owned())),
            "engagement_below" | "engagement_above" => {
                let (model, arg) = match arg.split_once(':') {
                    Some((model, n)) => {
                        let model = model.trim();
                        let index = checks::model(self.cx, at, model, models)?;
                        ((index > 0).then(|| model.to_owned()), n.trim())
                    }
                    None => (None, arg),
                };
                let n = match arg.parse::<f64>() {
                    Ok(n) if n.is_finite() && n.abs() <= MAX_MAGNITUDE => n,
                    _ => {
                        self.cx
                            .err(at, format!("{arg:?} is not a score threshold (a number)"));
                        return None;
                    }
                };
                Some(if kind.trim() == "engagement_below" {
                    WorkflowOn::EngagementBelow(model, n)
                } else {
                    WorkflowOn::EngagementAbove(model, n)
                })
            }
            "sla_breached" => {
                checks::sla(self.cx, at, arg, slas).then(|| WorkflowOn::SlaBreached(arg.to_owned()))
            }
            "level" => checks::level(self.cx, at, arg, levels).then(|| WorkflowOn::Level(arg.to_owned())),
            other => {
                self.cx
                    .err(at, format!("unknown event {other:?} (expected one of {KINDS})"));
                None
            }
        }
    }
}

/// Ids (rules, workflows, SLAs, grades) end up in keys and metadata.
fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
