//! A typed reader over a TOML document that keeps where everything is.
//!
//! The document is read with its spans (`toml::de::DeTable`) and walked by
//! hand rather than through serde, so that one pass reports every problem at
//! once, each at the path a user sees (`engagement[3].type`) and at its line
//! and column: a value's own, a key's for a key that does not belong, and
//! the table's for a key it lacks.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeInteger, DeTable, DeValue};

use super::suggestions::key_hint;
use super::{Place, PolicyError};
use crate::stage::Stage;
use crate::time::Span;

/// Scores and thresholds live well inside this; beyond it a value is a typo.
pub(super) const MAX_MAGNITUDE: f64 = 1_000_000.0;

/// A message quotes what the document says, and a document can say a lot:
/// longer messages keep their start and end (where hints go).
const MAX_MESSAGE_CHARS: usize = 400;
/// Characters of the offending line a TOML syntax error shows.
const EXCERPT_CHARS: usize = 120;

pub(super) type Node<'a> = Spanned<DeValue<'a>>;
pub(super) type Table<'a> = DeTable<'a>;

/// Reads `source` with its spans, or the syntax error that stops it.
pub(super) fn document(source: &str) -> Result<Spanned<Table<'_>>, PolicyError> {
    DeTable::parse(source).map_err(|e| PolicyError {
        path: String::new(),
        message: syntax_error(source, &e),
        place: e.span().map(|span| Lines::new(source).place(span.start)),
    })
}

/// Where a path points in `source`: the value at it (a table's header for a
/// table). `None` when the document is not TOML or has nothing there.
pub(crate) fn place_of(source: &str, path: &str) -> Option<Place> {
    let root = DeTable::parse(source).ok()?;
    let at = find(root.get_ref(), "", path)?;
    Some(Lines::new(source).place(at))
}

/// The document path of the rule `id` (`fit[2]`, `engagement[0]`,
/// `undesirable[1]`): `None` when the document is not TOML or has no such
/// rule.
pub(crate) fn rule_path(source: &str, id: &str) -> Option<String> {
    let root = DeTable::parse(source).ok()?;
    let table = root.get_ref();
    ["fit", "engagement", "undesirable"]
        .into_iter()
        .find_map(|array| {
            let (_, node) = table.iter().find(|(key, _)| key.get_ref() == array)?;
            let DeValue::Array(items) = node.get_ref() else {
                return None;
            };
            items.iter().enumerate().find_map(|(i, item)| {
                let DeValue::Table(rule) = item.get_ref() else {
                    return None;
                };
                rule.iter()
                    .any(|(key, value)| {
                        key.get_ref() == "id" && matches!(value.get_ref(), DeValue::String(s) if s == id)
                    })
                    .then(|| format!("{array}[{i}]"))
            })
        })
}

/// `source` with the value at `table.key` replaced by `value` (TOML text),
/// or the key added on the line after the table's header when the table
/// lacks it. `None` when the document is not TOML or has no such table.
pub(crate) fn with_value(source: &str, table: &str, key: &str, value: &str) -> Option<String> {
    let root = DeTable::parse(source).ok()?;
    let (at, end, text) = match find_span(root.get_ref(), "", &join(table, key)) {
        Some(span) => (span.start, span.end, value.to_owned()),
        None => {
            // Only under a `[table]` header of its own: not a dotted key,
            // an inline table, or a table named only by a deeper header.
            let header = find(root.get_ref(), "", table)?;
            let line_start = source[..header].rfind('\n').map_or(0, |i| i + 1);
            let line = source[line_start..].lines().next().unwrap_or_default().trim();
            let own = format!("[{}]", table.split('[').next().unwrap_or(table));
            let listed = format!("[[{}]]", table.split('[').next().unwrap_or(table));
            if line != own && line != listed {
                return None;
            }
            let eol = if source.contains("\r\n") { "\r\n" } else { "\n" };
            let line_end = source[header..]
                .find('\n')
                .map_or(source.len(), |i| header + i + 1);
            let newline = if line_end == source.len() && !source.ends_with('\n') {
                eol
            } else {
                ""
            };
            (line_end, line_end, format!("{newline}{key} = {value}{eol}"))
        }
    };
    let mut out = String::with_capacity(source.len() + text.len());
    out.push_str(&source[..at]);
    out.push_str(&text);
    out.push_str(&source[end..]);
    Some(out)
}

fn find(table: &Table<'_>, base: &str, path: &str) -> Option<usize> {
    find_span(table, base, path).map(|span| span.start)
}

fn find_span(table: &Table<'_>, base: &str, path: &str) -> Option<std::ops::Range<usize>> {
    table
        .iter()
        .find_map(|(key, node)| within(node, &join(base, key.get_ref()), path))
}

fn within(node: &Node<'_>, here: &str, path: &str) -> Option<std::ops::Range<usize>> {
    if here == path {
        return Some(node.span());
    }
    if !path.starts_with(here) {
        return None;
    }
    match node.get_ref() {
        DeValue::Table(t) => find_span(t, here, path),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| within(item, &format!("{here}[{i}]"), path)),
        _ => None,
    }
}

/// Byte offsets as lines and columns, for any number of problems in a
/// document of any size: line starts are indexed once, and characters are
/// counted from the nearest mark, one every [`Lines::MARK`] bytes, rather
/// than from the start of a line that may be the whole document.
struct Lines<'s> {
    source: &'s str,
    starts: Vec<usize>,
    /// (byte offset, characters before it), at character boundaries.
    marks: Vec<(usize, usize)>,
}

impl<'s> Lines<'s> {
    const MARK: usize = 64;

    fn new(source: &'s str) -> Self {
        let mut starts = vec![0];
        let mut marks = vec![(0, 0)];
        let mut next = Self::MARK;
        for (count, (at, c)) in source.char_indices().enumerate() {
            if at >= next {
                marks.push((at, count));
                next = at + Self::MARK;
            }
            if c == '\n' {
                starts.push(at + 1);
            }
        }
        Self {
            source,
            starts,
            marks,
        }
    }

    fn chars_before(&self, at: usize) -> usize {
        let i = self.marks.partition_point(|&(mark, _)| mark <= at) - 1;
        let (mark, count) = self.marks[i];
        count + self.source[mark..at].chars().count()
    }

    /// The 1-based line and column (in characters) of a byte offset.
    fn place(&self, at: usize) -> Place {
        let at = self.source.floor_char_boundary(at.min(self.source.len()));
        let line = self.starts.partition_point(|&start| start <= at);
        let start = self.starts[line - 1];
        Place {
            line,
            column: self.chars_before(at) - self.chars_before(start) + 1,
        }
    }
}

/// Where a problem is reported: a document path and a byte offset.
#[derive(Clone, Debug)]
pub(super) struct Loc {
    pub(super) path: String,
    at: usize,
}

impl Loc {
    /// The whole document.
    pub(super) fn root() -> Self {
        Self {
            path: String::new(),
            at: 0,
        }
    }

    /// What starts at `span`, at `path`.
    fn of(path: String, span: Range<usize>) -> Self {
        Self { path, at: span.start }
    }

    /// A key under this one that the document does not have: reported where
    /// this one is.
    pub(super) fn key(&self, key: &str) -> Self {
        Self {
            path: join(&self.path, key),
            at: self.at,
        }
    }
}

/// The problems found so far, with what it takes to place them.
pub(super) struct Cx<'s> {
    source: &'s str,
    /// Indexed at the first problem: a valid document never needs it.
    lines: Option<Lines<'s>>,
    pub(super) errors: Vec<PolicyError>,
}

impl<'s> Cx<'s> {
    pub(super) fn new(source: &'s str) -> Self {
        Self {
            source,
            lines: None,
            errors: Vec::new(),
        }
    }

    pub(super) fn err(&mut self, loc: &Loc, message: impl Into<String>) {
        let source = self.source;
        let place = self.lines.get_or_insert_with(|| Lines::new(source)).place(loc.at);
        self.errors.push(PolicyError {
            path: shortened(&loc.path, MAX_MESSAGE_CHARS),
            message: shortened(&message.into(), MAX_MESSAGE_CHARS),
            place: Some(place),
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

pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn kind_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// An integer as written (any radix); `None` beyond 64 bits.
pub(super) fn integer(i: &DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// Control characters other than line breaks and tabs: never in a policy.
pub(super) fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
}

/// A table being read: reports unknown keys on creation, typed getters after.
pub(super) struct Obj<'a> {
    pub(super) loc: Loc,
    table: &'a Table<'a>,
}

impl<'a> Obj<'a> {
    pub(super) fn new(cx: &mut Cx<'_>, loc: Loc, table: &'a Table<'a>, allowed: &[&str]) -> Self {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                let at = Loc::of(join(&loc.path, name), key.span());
                cx.err(&at, format!("unknown key{}", key_hint(name, allowed)));
            }
        }
        Self { loc, table }
    }

    /// A table whose keys are names the document chooses (grades, SLAs,
    /// properties): any key is allowed.
    pub(super) fn named(loc: Loc, table: &'a Table<'a>) -> Self {
        Self { loc, table }
    }

    /// The table's entries, each with where it is.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&'a str, Loc, &'a Node<'a>)> + '_ {
        self.table.iter().map(|(key, node)| {
            let key: &'a str = key.get_ref();
            (key, Loc::of(join(&self.loc.path, key), node.span()), node)
        })
    }

    /// Where a key's value is, or, for a key the table lacks, the table.
    pub(super) fn at(&self, key: &str) -> Loc {
        match self.table.get(key) {
            Some(node) => Loc::of(join(&self.loc.path, key), node.span()),
            None => self.loc.key(key),
        }
    }

    /// Where a key itself is, or the table for a key it lacks.
    pub(super) fn key_at(&self, key: &str) -> Loc {
        match self.table.get_key_value(key) {
            Some((k, _)) => Loc::of(join(&self.loc.path, key), k.span()),
            None => self.loc.key(key),
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a DeValue<'a>> {
        self.table.get(key).map(Spanned::get_ref)
    }

    pub(super) fn string(&self, cx: &mut Cx<'_>, key: &str) -> Option<String> {
        match self.get(key)? {
            DeValue::String(s) if has_control(s) => {
                cx.err(&self.at(key), "contains control characters");
                None
            }
            DeValue::String(s) => Some(s.to_string()),
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
    pub(super) fn name(&self, cx: &mut Cx<'_>, key: &str) -> Option<String> {
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

    pub(super) fn number(&self, cx: &mut Cx<'_>, key: &str) -> Option<f64> {
        let n = match self.get(key)? {
            #[allow(clippy::cast_precision_loss)] // policy numbers are small
            DeValue::Integer(i) => integer(i).map_or(f64::INFINITY, |i| i as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().unwrap_or(f64::NAN),
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

    pub(super) fn boolean(&self, cx: &mut Cx<'_>, key: &str) -> Option<bool> {
        match self.get(key)? {
            DeValue::Boolean(b) => Some(*b),
            other => {
                cx.err(
                    &self.at(key),
                    format!("expected true or false, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    pub(super) fn duration(&self, cx: &mut Cx<'_>, key: &str) -> Option<Span> {
        let text = self.string(cx, key)?;
        Span::parse(&text).map_err(|e| cx.err(&self.at(key), e)).ok()
    }

    pub(super) fn stage(&self, cx: &mut Cx<'_>, key: &str) -> Option<Stage> {
        let text = self.string(cx, key)?;
        match text.parse::<Stage>() {
            Ok(Stage::Merged) => {
                cx.err(
                    &self.at(key),
                    "MERGED is entered only by a merge: a policy cannot name it",
                );
                None
            }
            Ok(stage) => Some(stage),
            Err(e) => {
                cx.err(&self.at(key), e.to_string());
                None
            }
        }
    }

    /// A list of distinct, non-blank strings, each with where it is.
    pub(super) fn strings(&self, cx: &mut Cx<'_>, key: &str) -> Option<Vec<(String, Loc)>> {
        let node = self.table.get(key)?;
        strings(cx, &self.at(key), node)
    }

    /// A sub-table, with where it is.
    pub(super) fn table(&self, cx: &mut Cx<'_>, key: &str) -> Option<(Loc, &'a Table<'a>)> {
        match self.get(key)? {
            DeValue::Table(t) => Some((self.at(key), t)),
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
    pub(super) fn tables(&self, cx: &mut Cx<'_>, key: &str) -> Vec<(Loc, &'a Table<'a>)> {
        let at = self.at(key);
        match self.get(key) {
            None => Vec::new(),
            Some(DeValue::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item_at = Loc::of(format!("{}[{i}]", at.path), item.span());
                    match item.get_ref() {
                        DeValue::Table(t) => Some((item_at, t)),
                        other => {
                            cx.err(&item_at, format!("expected a table, found {}", kind_of(other)));
                            None
                        }
                    }
                })
                .collect(),
            Some(other) => {
                cx.err(
                    &at,
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

/// A list of distinct, non-blank strings, each with where it is; `None`
/// when the value is not a list.
pub(super) fn strings(cx: &mut Cx<'_>, at: &Loc, node: &Node<'_>) -> Option<Vec<(String, Loc)>> {
    let DeValue::Array(items) = node.get_ref() else {
        cx.err(
            at,
            format!("expected an array of strings, found {}", kind_of(node.get_ref())),
        );
        return None;
    };
    let mut out: Vec<(String, Loc)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_at = Loc::of(format!("{}[{i}]", at.path), item.span());
        match item.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => cx.err(&item_at, "must not be empty"),
            DeValue::String(s) if has_control(s) => cx.err(&item_at, "contains control characters"),
            DeValue::String(s) if out.iter().any(|(o, _)| o == s) => {
                cx.err(&item_at, format!("{s:?} is listed twice"));
            }
            DeValue::String(s) => out.push((s.to_string(), item_at)),
            other => cx.err(&item_at, format!("expected a string, found {}", kind_of(other))),
        }
    }
    Some(out)
}

/// The texts of a list read by [`strings`], without their places.
pub(super) fn texts(items: Vec<(String, Loc)>) -> Vec<String> {
    items.into_iter().map(|(text, _)| text).collect()
}
