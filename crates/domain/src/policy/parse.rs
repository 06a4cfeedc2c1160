//! TOML → [`Policy`], collecting every error with its document path.
//!
//! The document is walked by hand rather than through serde so that one pass
//! reports all problems at once, each at the path a user sees in the file.

use std::collections::{BTreeMap, BTreeSet};

use regex::RegexBuilder;
use toml::{Table, Value};

use super::rules::fold;
use super::{
    AttributeMatcher, AttributeRule, EventRule, Grade, LOWEST_GRADE, MqlStage, Policy, PolicyError,
    PolicyErrors, PropertyCondition, Reasons, Sla, SlaKind, SqlStage, Workflow, WorkflowOn,
};
use crate::stage::Stage;
use crate::time::Span;

/// Scores and thresholds live well inside this; beyond it a value is a typo.
const MAX_MAGNITUDE: f64 = 1_000_000.0;
const MAX_REGEX_BYTES: usize = 1 << 20;

/// A message quotes what the document says, and a document can say a lot:
/// longer messages keep their start and end (where hints go).
const MAX_MESSAGE_CHARS: usize = 400;
/// Characters of the offending line a TOML syntax error shows.
const EXCERPT_CHARS: usize = 120;

pub(super) fn parse(source: &str) -> Result<Policy, PolicyErrors> {
    let root: Table = match toml::from_str(source) {
        Ok(table) => table,
        Err(e) => {
            return Err(PolicyErrors(vec![PolicyError {
                path: String::new(),
                message: syntax_error(source, &e),
            }]));
        }
    };
    let mut cx = Cx::default();
    let policy = Parser { cx: &mut cx }.policy(&root);
    match policy {
        Some(policy) if cx.errors.is_empty() => Ok(policy),
        _ => Err(PolicyErrors(cx.errors)),
    }
}

#[derive(Default)]
struct Cx {
    errors: Vec<PolicyError>,
}

impl Cx {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(PolicyError {
            path: shortened(path, MAX_MESSAGE_CHARS),
            message: shortened(&message.into(), MAX_MESSAGE_CHARS),
        });
    }
}

/// `text` cut to about `max` characters: its start, ` … `, its end.
fn shortened(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let tail = max / 4;
    let head = max - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start} … {end}")
}

/// A TOML syntax error with its position and the offending line, cut to
/// [`EXCERPT_CHARS`] around the error: a one-line document of 200 KB must
/// not come back whole in the message.
fn syntax_error(source: &str, error: &toml::de::Error) -> String {
    let message = shortened(error.message().trim_end(), MAX_MESSAGE_CHARS);
    let Some(span) = error.span() else {
        return format!("not valid TOML: {message}");
    };
    let at = source.floor_char_boundary(span.start.min(source.len()));
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[at..].find('\n').map_or(source.len(), |i| at + i);
    let line = source[..at].matches('\n').count() + 1;
    let column = source[line_start..at].chars().count();
    // Tabs and other control characters would shift the caret, or worse.
    let text: Vec<char> = source[line_start..line_end]
        .trim_end_matches('\r')
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let from = if text.len() <= EXCERPT_CHARS {
        0
    } else {
        column
            .saturating_sub(EXCERPT_CHARS / 2)
            .min(text.len() - EXCERPT_CHARS)
    };
    let to = text.len().min(from + EXCERPT_CHARS);
    let mut excerpt: String = text[from..to].iter().collect();
    let mut caret = column - from;
    if from > 0 {
        excerpt.insert(0, '…');
        caret += 1;
    }
    if to < text.len() {
        excerpt.push('…');
    }
    let gutter = " ".repeat(line.to_string().len());
    format!(
        "not valid TOML at line {line}, column {}: {message}\n{gutter} |\n{line} | {excerpt}\n{gutter} | {}^",
        column + 1,
        " ".repeat(caret)
    )
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A table being read: reports unknown keys on creation, typed getters after.
struct Obj<'a> {
    path: String,
    table: &'a Table,
}

impl<'a> Obj<'a> {
    fn new(cx: &mut Cx, path: String, table: &'a Table, allowed: &[&str]) -> Self {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = closest(key, allowed.iter().copied())
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_else(|| format!(" (expected one of: {})", allowed.join(", ")));
                cx.err(&join(&path, key), format!("unknown key{hint}"));
            }
        }
        Self { path, table }
    }

    fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn string(&self, cx: &mut Cx, key: &str) -> Option<String> {
        match self.table.get(key)? {
            Value::String(s) if has_control(s) => {
                cx.err(&self.at(key), "contains control characters");
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected a string, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    /// A required, non-blank string.
    fn name(&self, cx: &mut Cx, key: &str) -> Option<String> {
        if !self.has(key) {
            cx.err(&self.at(key), "required");
            return None;
        }
        let s = self.string(cx, key)?;
        if s.trim().is_empty() {
            cx.err(&self.at(key), "must not be empty");
            return None;
        }
        Some(s)
    }

    fn number(&self, cx: &mut Cx, key: &str) -> Option<f64> {
        let n = match self.table.get(key)? {
            #[allow(clippy::cast_precision_loss)] // policy numbers are small
            Value::Integer(i) => *i as f64,
            Value::Float(f) => *f,
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected a number, found {}", kind_of(other)),
                );
                return None;
            }
        };
        if !n.is_finite() || n.abs() > MAX_MAGNITUDE {
            cx.err(
                &self.at(key),
                format!("{n} is out of range (-{MAX_MAGNITUDE} to {MAX_MAGNITUDE})"),
            );
            return None;
        }
        Some(n)
    }

    fn boolean(&self, cx: &mut Cx, key: &str) -> Option<bool> {
        match self.table.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected true or false, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn duration(&self, cx: &mut Cx, key: &str) -> Option<Span> {
        let text = self.string(cx, key)?;
        Span::parse(&text).map_err(|e| cx.err(&self.at(key), e)).ok()
    }

    fn stage(&self, cx: &mut Cx, key: &str) -> Option<Stage> {
        let text = self.string(cx, key)?;
        text.parse::<Stage>()
            .map_err(|e| cx.err(&self.at(key), e.to_string()))
            .ok()
    }

    /// A list of distinct, non-blank strings.
    fn strings(&self, cx: &mut Cx, key: &str) -> Option<Vec<String>> {
        let path = self.at(key);
        strings(cx, &path, self.table.get(key)?)
    }

    fn table(&self, cx: &mut Cx, key: &str) -> Option<&'a Table> {
        match self.table.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected a table, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    /// An array of tables (`[[key]]`), each with its indexed path.
    fn tables(&self, cx: &mut Cx, key: &str) -> Vec<(String, &'a Table)> {
        let path = self.at(key);
        match self.table.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item_path = format!("{path}[{i}]");
                    match item {
                        Value::Table(t) => Some((item_path, t)),
                        other => {
                            cx.err(&item_path, format!("expected a table, found {}", kind_of(other)));
                            None
                        }
                    }
                })
                .collect(),
            Some(other) => {
                cx.err(
                    &path,
                    format!(
                        "expected an array of tables ([[{key}]]), found {}",
                        kind_of(other)
                    ),
                );
                Vec::new()
            }
        }
    }
}

fn strings(cx: &mut Cx, path: &str, value: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        cx.err(
            path,
            format!("expected an array of strings, found {}", kind_of(value)),
        );
        return None;
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match item {
            Value::String(s) if s.trim().is_empty() => cx.err(&item_path, "must not be empty"),
            Value::String(s) if has_control(s) => cx.err(&item_path, "contains control characters"),
            Value::String(s) if out.contains(s) => cx.err(&item_path, format!("{s:?} is listed twice")),
            Value::String(s) => out.push(s.clone()),
            other => cx.err(&item_path, format!("expected a string, found {}", kind_of(other))),
        }
    }
    Some(out)
}

struct Parser<'c> {
    cx: &'c mut Cx,
}

/// Where each rule id was first used, to report duplicates.
type Ids = BTreeMap<String, String>;

impl Parser<'_> {
    fn policy(&mut self, root: &Table) -> Option<Policy> {
        let top = Obj::new(
            self.cx,
            String::new(),
            root,
            &[
                "name",
                "description",
                "decay",
                "engagements",
                "fit",
                "engagement",
                "undesirable",
                "stages",
                "reasons",
                "grades",
                "sla",
                "workflow",
            ],
        );
        let name = top.name(self.cx, "name");
        let description = top.string(self.cx, "description").unwrap_or_default();
        let half_life = top.table(self.cx, "decay").and_then(|t| {
            let decay = Obj::new(self.cx, top.at("decay"), t, &["half_life"]);
            if !decay.has("half_life") {
                self.cx.err(
                    &decay.at("half_life"),
                    "required (leave out [decay] for no decay)",
                );
            }
            decay.duration(self.cx, "half_life")
        });
        let engagement_types = self.vocabulary(&top);
        let types: BTreeSet<String> = engagement_types.iter().cloned().collect();

        let mut ids = Ids::new();
        let mut attribute_rules = Vec::new();
        let mut event_rules = Vec::new();
        for (path, t) in top.tables(self.cx, "fit") {
            let obj = Obj::new(
                self.cx,
                path,
                t,
                &[
                    "id",
                    "attribute",
                    "equals",
                    "one_of",
                    "matches",
                    "at_least",
                    "at_most",
                    "points",
                ],
            );
            if let Some(rule) = self.attribute_rule(&obj, &mut ids, false) {
                attribute_rules.push(rule);
            }
        }
        for (path, t) in top.tables(self.cx, "engagement") {
            let obj = Obj::new(
                self.cx,
                path,
                t,
                &[
                    "id",
                    "type",
                    "channel",
                    "where",
                    "points",
                    "max_points",
                    "max_per_day",
                ],
            );
            if let Some(rule) = self.event_rule(&obj, &mut ids, &types, false) {
                event_rules.push(rule);
            }
        }
        for (path, t) in top.tables(self.cx, "undesirable") {
            match (t.contains_key("attribute"), t.contains_key("type")) {
                (true, false) => {
                    let obj = Obj::new(
                        self.cx,
                        path,
                        t,
                        &[
                            "id", "attribute", "equals", "one_of", "matches", "at_least", "at_most",
                            "points", "disqualify",
                        ],
                    );
                    if let Some(rule) = self.attribute_rule(&obj, &mut ids, true) {
                        attribute_rules.push(rule);
                    }
                }
                (false, true) => {
                    let obj = Obj::new(
                        self.cx,
                        path,
                        t,
                        &[
                            "id", "type", "channel", "where", "points", "max_points", "max_per_day",
                            "disqualify",
                        ],
                    );
                    if let Some(rule) = self.event_rule(&obj, &mut ids, &types, true) {
                        event_rules.push(rule);
                    }
                }
                _ => self.cx.err(
                    &path,
                    "an undesirable reads either an `attribute` (profile) or a `type` (engagement), exactly one",
                ),
            }
        }

        let grades = self.grades(&top);
        let (mql, sql) = self.stages(&top, &types, &grades);
        let reasons = self.reasons(&top);
        let slas = self.slas(&top, &types, &reasons);
        let workflows = self.workflows(&top, &reasons, &slas);

        Some(Policy {
            name: name?,
            description,
            half_life,
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
        })
    }

    fn vocabulary(&mut self, top: &Obj<'_>) -> Vec<String> {
        let Some(t) = top.table(self.cx, "engagements") else {
            if !top.has("engagements") {
                self.cx
                    .err("engagements.types", "required: the engagement vocabulary");
            }
            return Vec::new();
        };
        let obj = Obj::new(self.cx, top.at("engagements"), t, &["types"]);
        if !obj.has("types") {
            self.cx
                .err(&obj.at("types"), "required: the engagement vocabulary");
        }
        let types = obj.strings(self.cx, "types").unwrap_or_default();
        for (i, ty) in types.iter().enumerate() {
            if ty.chars().any(char::is_whitespace) {
                self.cx.err(
                    &format!("{}[{i}]", obj.at("types")),
                    format!("{ty:?} must not contain spaces"),
                );
            }
        }
        types
    }

    fn rule_id(&mut self, obj: &Obj<'_>, ids: &mut Ids) -> Option<String> {
        let id = obj.name(self.cx, "id")?;
        let path = obj.at("id");
        if !is_id(&id) {
            self.cx.err(
                &path,
                format!("{id:?} is not an id: use letters, digits, '_', '-' and '.'"),
            );
            return None;
        }
        if let Some(first) = ids.get(&id) {
            self.cx
                .err(&path, format!("duplicate rule id {id:?} (first used at {first})"));
            return None;
        }
        ids.insert(id.clone(), path);
        Some(id)
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

    fn attribute_rule(&mut self, obj: &Obj<'_>, ids: &mut Ids, undesirable: bool) -> Option<AttributeRule> {
        let id = self.rule_id(obj, ids);
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
                &obj.path,
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
                Some(AttributeMatcher::OneOf(values.iter().map(|v| fold(v)).collect()))
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
        check_type(self.cx, &obj.at(key), &ty, types).then_some(ty)
    }

    fn event_rule(
        &mut self,
        obj: &Obj<'_>,
        ids: &mut Ids,
        types: &BTreeSet<String>,
        undesirable: bool,
    ) -> Option<EventRule> {
        let id = self.rule_id(obj, ids);
        let kind = self.engagement_type(obj, "type", types);
        let channel = obj.string(self.cx, "channel").map(|c| fold(&c));
        if channel.as_deref() == Some("") {
            self.cx.err(
                &obj.at("channel"),
                "must not be empty (leave it out to match every channel)",
            );
        }
        let conditions = obj
            .table(self.cx, "where")
            .map(|t| self.conditions(&obj.at("where"), t));
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
        let max_per_day = match obj.table.get("max_per_day") {
            None => None,
            Some(Value::Integer(n)) if (1..=1_000_000).contains(n) => u32::try_from(*n).ok(),
            Some(Value::Integer(n)) => {
                self.cx.err(
                    &obj.at("max_per_day"),
                    format!("a cap must be a count from 1 to 1000000, not {n}"),
                );
                None
            }
            Some(other) => {
                self.cx.err(
                    &obj.at("max_per_day"),
                    format!("expected a whole number, found {}", kind_of(other)),
                );
                None
            }
        };
        Some(EventRule {
            id: id?,
            kind: kind?,
            channel,
            conditions: conditions.unwrap_or_else(|| Some(Vec::new()))?,
            points: points?,
            max_points,
            max_per_day,
            undesirable,
            disqualify,
        })
    }

    fn conditions(&mut self, path: &str, table: &Table) -> Option<Vec<PropertyCondition>> {
        let mut out = Vec::with_capacity(table.len());
        let mut ok = true;
        for (key, value) in table {
            let at = join(path, key);
            if has_control(key) || key.trim().is_empty() {
                self.cx.err(&at, "not a property name");
                ok = false;
                continue;
            }
            let condition = if let Some(property) = key.strip_suffix("_one_of") {
                strings(self.cx, &at, value).map(|values| PropertyCondition::OneOf {
                    property: property.to_owned(),
                    values: values.iter().map(|v| fold(v)).collect(),
                })
            } else {
                let Value::String(text) = value else {
                    self.cx
                        .err(&at, format!("expected a string, found {}", kind_of(value)));
                    ok = false;
                    continue;
                };
                match key.strip_suffix("_prefix") {
                    Some(property) => Some(PropertyCondition::Prefix {
                        property: property.to_owned(),
                        prefix: text.trim().to_owned(),
                    }),
                    None => Some(PropertyCondition::Equals {
                        property: key.clone(),
                        value: fold(text),
                    }),
                }
            };
            match condition {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn grades(&mut self, top: &Obj<'_>) -> Vec<Grade> {
        let Some(t) = top.table(self.cx, "grades") else {
            return Vec::new();
        };
        let path = top.at("grades");
        let mut grades: Vec<Grade> = Vec::with_capacity(t.len());
        for key in t.keys() {
            let at = join(&path, key);
            if !is_id(key) {
                self.cx.err(
                    &at,
                    format!("{key:?} is not a grade name: use letters, digits, '_', '-' and '.'"),
                );
                continue;
            }
            if key == LOWEST_GRADE {
                self.cx
                    .err(&at, "F is the grade below every band and cannot be set");
                continue;
            }
            let obj = Obj {
                path: path.clone(),
                table: t,
            };
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
                letter: key.clone(),
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
    ) -> (Option<MqlStage>, SqlStage) {
        let Some(t) = top.table(self.cx, "stages") else {
            if !top.has("stages") {
                self.cx.err("stages.MQL", "required: the MQL thresholds");
            }
            return (None, SqlStage::default());
        };
        let stages = Obj::new(self.cx, top.at("stages"), t, &["MQL", "SQL"]);
        let mql = match stages.table(self.cx, "MQL") {
            None => {
                if !stages.has("MQL") {
                    self.cx.err(&stages.at("MQL"), "required: the MQL thresholds");
                }
                None
            }
            Some(t) => {
                let obj = Obj::new(
                    self.cx,
                    stages.at("MQL"),
                    t,
                    &[
                        "engagement_at_least",
                        "fit_at_least",
                        "grade_at_least",
                        "requires_attributes",
                    ],
                );
                let engagement = self.threshold(&obj, "engagement_at_least");
                let fit = self.threshold(&obj, "fit_at_least");
                let grade = obj.string(self.cx, "grade_at_least");
                if let Some(letter) = &grade
                    && !grades.iter().any(|g| g.letter == *letter)
                {
                    let known: Vec<&str> = grades.iter().map(|g| g.letter.as_str()).collect();
                    self.cx.err(
                        &obj.at("grade_at_least"),
                        format!(
                            "unknown grade {letter:?} (the [grades] table has: {})",
                            known.join(", ")
                        ),
                    );
                }
                let requires = obj.strings(self.cx, "requires_attributes").unwrap_or_default();
                Some(MqlStage {
                    engagement_at_least: engagement.unwrap_or(0.0),
                    fit_at_least: fit.unwrap_or(0.0),
                    grade_at_least: grade,
                    requires_attributes: requires,
                })
            }
        };
        let sql = match stages.table(self.cx, "SQL") {
            None => SqlStage::default(),
            Some(t) => {
                let obj = Obj::new(self.cx, stages.at("SQL"), t, &["sales_ready_actions"]);
                let actions = obj.strings(self.cx, "sales_ready_actions").unwrap_or_default();
                let at = obj.at("sales_ready_actions");
                let actions = actions
                    .into_iter()
                    .enumerate()
                    .filter(|(i, a)| check_type(self.cx, &format!("{at}[{i}]"), a, types))
                    .map(|(_, a)| a)
                    .collect();
                SqlStage {
                    sales_ready_actions: actions,
                }
            }
        };
        (mql, sql)
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
        let Some(t) = top.table(self.cx, "reasons") else {
            return Reasons::default();
        };
        let obj = Obj::new(
            self.cx,
            top.at("reasons"),
            t,
            &["reject", "recycle", "disqualify"],
        );
        Reasons {
            reject: obj.strings(self.cx, "reject").unwrap_or_default(),
            recycle: obj.strings(self.cx, "recycle").unwrap_or_default(),
            disqualify: obj.strings(self.cx, "disqualify").unwrap_or_default(),
        }
    }

    fn slas(&mut self, top: &Obj<'_>, types: &BTreeSet<String>, reasons: &Reasons) -> Vec<Sla> {
        let Some(t) = top.table(self.cx, "sla") else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(t.len());
        for (id, value) in t {
            let path = join(&top.at("sla"), id);
            if !is_id(id) {
                self.cx.err(
                    &path,
                    format!("{id:?} is not an id: use letters, digits, '_', '-' and '.'"),
                );
                continue;
            }
            let Value::Table(t) = value else {
                self.cx.err(
                    &path,
                    format!("expected a table ([sla.{id}]), found {}", kind_of(value)),
                );
                continue;
            };
            let obj = Obj::new(self.cx, path, t, &["stage", "within", "until", "idle", "then"]);
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
                        .err(&obj.path, "takes until = \"<type>\" or idle = true, not both");
                    None
                }
                (None, false) => {
                    self.cx.err(&obj.path, "needs until = \"<type>\" or idle = true");
                    None
                }
            };
            let recycle = match obj.string(self.cx, "then").as_deref() {
                None => false,
                Some("recycle") => true,
                Some(other) => {
                    self.cx.err(
                        &obj.at("then"),
                        format!("unknown action {other:?} (the only one is \"recycle\")"),
                    );
                    false
                }
            };
            let (Some(stage), Some(within), Some(kind)) = (stage, within, kind) else {
                continue;
            };
            let sla = Sla {
                id: id.clone(),
                stage,
                within,
                kind,
                recycle,
            };
            if recycle {
                if !matches!(stage, Stage::Mql | Stage::Sql) {
                    self.cx.err(
                        &obj.at("then"),
                        format!("only an MQL or SQL can be recycled, not {stage}"),
                    );
                }
                let reason = sla.recycle_reason();
                if !reasons.recycle.iter().any(|r| r == reason) {
                    self.cx.err(
                        &obj.at("then"),
                        format!(
                            "a recycle by this SLA gives the reason {reason:?}: add it to [reasons] recycle"
                        ),
                    );
                }
            }
            out.push(sla);
        }
        out
    }

    fn workflows(&mut self, top: &Obj<'_>, reasons: &Reasons, slas: &[Sla]) -> Vec<Workflow> {
        let mut out = Vec::new();
        let mut ids = Ids::new();
        for (path, t) in top.tables(self.cx, "workflow") {
            let obj = Obj::new(self.cx, path, t, &["id", "on", "after", "if_still", "emit"]);
            let id = self.rule_id(&obj, &mut ids);
            if !obj.has("on") {
                self.cx.err(&obj.at("on"), "required");
            }
            let on = obj
                .string(self.cx, "on")
                .and_then(|text| self.workflow_on(&obj.at("on"), &text, reasons, slas));
            let after = obj.duration(self.cx, "after");
            let if_still = obj.stage(self.cx, "if_still");
            let emit = obj.name(self.cx, "emit");
            if let (Some(on), Some(_), Some(still)) = (&on, after, if_still)
                && let Some(arming) = arming_stage(on, slas)
                && arming != still
            {
                self.cx.err(
                    &obj.at("if_still"),
                    format!(
                        "can never fire: after {on} the lead is in {arming}, and a delayed workflow is cancelled when the lead leaves that stage"
                    ),
                );
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

    fn workflow_on(&mut self, path: &str, text: &str, reasons: &Reasons, slas: &[Sla]) -> Option<WorkflowOn> {
        const KINDS: &str = "entered:<STAGE>, rejected:<reason>, recycled:<reason>, engagement_below:<n>, engagement_above:<n>, sla_breached:<id>";
        let Some((kind, arg)) = text.split_once(':') else {
            self.cx
                .err(path, format!("unknown event {text:?} (expected one of {KINDS})"));
            return None;
        };
        let arg = arg.trim();
        let reason = |cx: &mut Cx, list: &[String], name: &str| {
            if list.iter().any(|r| r == arg) {
                true
            } else {
                let hint = closest(arg, list.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default();
                cx.err(
                    path,
                    format!("unknown {name} reason {arg:?}{hint}: it must be in [reasons] {name}"),
                );
                false
            }
        };
        match kind.trim() {
            "entered" => match arg.parse::<Stage>() {
                Ok(stage) => Some(WorkflowOn::Entered(stage)),
                Err(e) => {
                    self.cx.err(path, e.to_string());
                    None
                }
            },
            "rejected" => {
                reason(self.cx, &reasons.reject, "reject").then(|| WorkflowOn::Rejected(arg.to_owned()))
            }
            "recycled" => {
                reason(self.cx, &reasons.recycle, "recycle").then(|| WorkflowOn::Recycled(arg.to_owned()))
            }
            "engagement_below" | "engagement_above" => {
                let n = match arg.parse::<f64>() {
                    Ok(n) if n.is_finite() && n.abs() <= MAX_MAGNITUDE => n,
                    _ => {
                        self.cx
                            .err(path, format!("{arg:?} is not a score threshold (a number)"));
                        return None;
                    }
                };
                Some(if kind.trim() == "engagement_below" {
                    WorkflowOn::EngagementBelow(n)
                } else {
                    WorkflowOn::EngagementAbove(n)
                })
            }
            "sla_breached" => {
                if slas.iter().any(|s| s.id == arg) {
                    Some(WorkflowOn::SlaBreached(arg.to_owned()))
                } else {
                    self.cx
                        .err(path, format!("unknown SLA {arg:?} (no [sla.{arg}] section)"));
                    None
                }
            }
            other => {
                self.cx
                    .err(path, format!("unknown event {other:?} (expected one of {KINDS})"));
                None
            }
        }
    }
}

/// Control characters other than line breaks and tabs: never in a policy.
fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
}

/// Ids (rules, workflows, SLAs, grades) end up in keys and metadata.
fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The stage a lead is in right after a workflow's event, where it is fixed.
fn arming_stage(on: &WorkflowOn, slas: &[Sla]) -> Option<Stage> {
    match on {
        WorkflowOn::Entered(stage) => Some(*stage),
        WorkflowOn::Rejected(_) | WorkflowOn::Recycled(_) => Some(Stage::Iql),
        WorkflowOn::SlaBreached(id) => slas
            .iter()
            .find(|s| s.id == *id)
            .map(|s| if s.recycle { Stage::Iql } else { s.stage }),
        WorkflowOn::EngagementBelow(_) | WorkflowOn::EngagementAbove(_) => None,
    }
}

fn check_type(cx: &mut Cx, path: &str, ty: &str, types: &BTreeSet<String>) -> bool {
    if types.contains(ty) {
        return true;
    }
    let hint = closest(ty, types.iter().map(String::as_str))
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default();
    cx.err(path, format!("unknown engagement type {ty:?}{hint}"));
    false
}

/// The candidate nearest to `word` by edit distance, if it is close enough to
/// be a typo of it.
pub(super) fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
