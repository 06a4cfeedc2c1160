//! Attribution: leads grouped by a property of their engagements — the
//! first one (`first:<prop>`), the one that made them an MQL
//! (`mql:<prop>`), or every one before their outcome (`touched:<prop>`,
//! where a lead belongs to several groups).
//!
//! `channel` and `type` name the engagement's own channel and type; any
//! other name, one of its properties. A value is compared as given, after
//! trimming; a lead whose engagement lacks the property (or has none) is
//! in "(none)"; an erased lead, whose engagement details are gone, in
//! "(erased)". Groups are bounded: the `top` largest (by leads) keep their
//! key, the rest are "(other)".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::time::Timestamp;

/// The group of a lead whose engagement lacks the property.
pub const NONE: &str = "(none)";
/// The group of an erased lead.
pub const ERASED: &str = "(erased)";
/// The group of every lead outside the top groups.
pub const OTHER: &str = "(other)";
/// The `mql:` group of a lead that has not been an MQL.
pub const NOT_MQL: &str = "(not MQL)";
/// A group key is cut to this many characters.
pub const MAX_KEY_CHARS: usize = 200;
/// The most groups kept besides "(other)", and the default.
pub const MAX_TOP: usize = 100;
pub const DEFAULT_TOP: usize = 20;

/// Which engagement of a lead gives its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touchpoint {
    /// The lead's first engagement (in scoring order).
    First,
    /// The engagement in the lead's first MQL transition (its `cause_ref`).
    Mql,
    /// Every engagement before the lead's outcome.
    Touched,
}

/// A grouping by an engagement property: `first:utm_campaign`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub touchpoint: Touchpoint,
    pub property: String,
}

impl fmt::Display for Attribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let touchpoint = match self.touchpoint {
            Touchpoint::First => "first",
            Touchpoint::Mql => "mql",
            Touchpoint::Touched => "touched",
        };
        write!(f, "{touchpoint}:{}", self.property)
    }
}

impl std::str::FromStr for Attribution {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((touchpoint, property)) = text.split_once(':') else {
            return Err(format!(
                "{:?} is not first:<property>, mql:<property> or touched:<property>",
                cut(text, 64)
            ));
        };
        let touchpoint = match touchpoint {
            "first" => Touchpoint::First,
            "mql" => Touchpoint::Mql,
            "touched" => Touchpoint::Touched,
            other => {
                return Err(format!(
                    "unknown touchpoint {:?} (first, mql or touched)",
                    cut(other, 64)
                ));
            }
        };
        let property = property.trim();
        if property.is_empty() || property.chars().count() > 128 {
            return Err("the property must be 1 to 128 characters".to_owned());
        }
        Ok(Self {
            touchpoint,
            property: property.to_owned(),
        })
    }
}

impl Attribution {
    /// A lead can be in several groups.
    pub fn overlaps(&self) -> bool {
        self.touchpoint == Touchpoint::Touched
    }
}

/// One engagement of a lead, as attribution reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    pub event_id: String,
    pub at: Timestamp,
    /// The property's value (`None`: the engagement lacks it).
    pub value: Option<String>,
}

/// What attribution needs of a lead.
#[derive(Clone, Copy, Debug)]
pub struct Touched<'a> {
    pub erased: bool,
    /// In scoring order.
    pub touches: &'a [Touch],
    /// `None`: never an MQL; `Some(None)`: an MQL by a command, the profile
    /// or a policy; `Some(Some(id))`: by the engagement `id`.
    pub mql_by: Option<Option<&'a str>>,
    /// The lead's outcome (a win, or a loss before any), if it has one.
    pub outcome_at: Option<Timestamp>,
}

impl Attribution {
    /// A lead's group keys: one, or for `touched:` every distinct value
    /// (in order of first touch).
    pub fn keys(&self, lead: &Touched<'_>) -> Vec<String> {
        if lead.erased {
            return vec![ERASED.to_owned()];
        }
        fn value(t: &Touch) -> Option<&str> {
            t.value.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let one = |v: Option<&str>| vec![v.map_or_else(|| NONE.to_owned(), |v| cut(v, MAX_KEY_CHARS))];
        match self.touchpoint {
            Touchpoint::First => one(lead.touches.first().and_then(value)),
            Touchpoint::Mql => match lead.mql_by {
                None => vec![NOT_MQL.to_owned()],
                Some(None) => one(None),
                Some(Some(id)) => one(lead.touches.iter().find(|t| t.event_id == id).and_then(value)),
            },
            Touchpoint::Touched => {
                let mut keys: Vec<String> = Vec::new();
                for t in lead
                    .touches
                    .iter()
                    .filter(|t| lead.outcome_at.is_none_or(|o| t.at <= o))
                {
                    if let Some(v) = value(t) {
                        let key = cut(v, MAX_KEY_CHARS);
                        if !keys.contains(&key) {
                            keys.push(key);
                        }
                    }
                }
                if keys.is_empty() {
                    keys.push(NONE.to_owned());
                }
                keys
            }
        }
    }
}

/// Each lead's keys with those outside the `top` largest groups (by
/// leads; ties by key) made "(other)", once per lead.
pub fn bounded(keys: Vec<Vec<String>>, top: usize) -> Vec<Vec<String>> {
    bounded_by(keys, top, |a, b| a.cmp(b), OTHER.to_owned())
}

/// [`bounded`] over any keys (`order` breaks ties in size), `other`
/// standing for the rest.
pub fn bounded_by<K: Ord + Clone>(
    keys: Vec<Vec<K>>,
    top: usize,
    order: impl Fn(&K, &K) -> std::cmp::Ordering,
    other: K,
) -> Vec<Vec<K>> {
    let mut sizes: BTreeMap<&K, u64> = BTreeMap::new();
    for lead in &keys {
        for key in lead {
            *sizes.entry(key).or_default() += 1;
        }
    }
    if sizes.len() <= top {
        return keys;
    }
    let mut ranked: Vec<(&K, u64)> = sizes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| order(a.0, b.0)));
    let kept: BTreeSet<K> = ranked.iter().take(top).map(|(k, _)| (*k).clone()).collect();
    keys.into_iter()
        .map(|lead| {
            let mut out: Vec<K> = Vec::with_capacity(lead.len());
            for key in lead {
                let key = if kept.contains(&key) { key } else { other.clone() };
                if !out.contains(&key) {
                    out.push(key);
                }
            }
            out
        })
        .collect()
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
