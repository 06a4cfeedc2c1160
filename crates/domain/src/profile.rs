//! A lead's profile: string attributes, with `email_domain` derived from `email`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, FieldViolation};

pub const EMAIL: &str = "email";
/// A lead's explicit account: an account's external key (see
/// `crate::account::ACCOUNT_KEY`), held to the rules of a key.
pub const ACCOUNT_KEY: &str = "account_key";
/// Characters an account key may have, as every key of the API.
pub const MAX_ACCOUNT_KEY_CHARS: usize = 128;
pub const EMAIL_DOMAIN: &str = "email_domain";

/// Attributes a lead keeps at most (the derived `email_domain` aside).
pub const MAX_ATTRIBUTES: usize = 64;
/// Bytes of attribute names and values a lead keeps at most (the derived
/// `email_domain` aside): every read of the lead carries them.
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// The longest match key kept: two leads whose values are longer together
/// are not found as duplicates by them.
pub const MAX_MATCH_KEY_BYTES: usize = 512;

/// An email as duplicates are found by: trimmed and lower-cased, without a
/// `+tag` in its local part (`Ann+News@Initech.com` → `ann@initech.com`).
pub fn normalised_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@')?;
    let local = local.split_once('+').map_or(local, |(base, _)| base);
    (!local.is_empty() && !domain.is_empty()).then(|| format!("{local}@{domain}"))
}

/// An attribute's value as duplicates are found by: trimmed, lower-cased,
/// runs of whitespace made one space, control characters left out.
pub fn normalised_value(value: &str) -> String {
    let visible: String = value
        .chars()
        .map(|c| {
            if c.is_control() && !c.is_whitespace() {
                ' '
            } else {
                c
            }
        })
        .collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The attributes a lead has. An attribute is present when non-empty; the
/// derived `email_domain` is always the lower-cased text after the last `@`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Profile(BTreeMap<String, String>);

impl Profile {
    /// A profile for a new lead: `email` is required and must look like one.
    pub fn capture(attributes: BTreeMap<String, String>) -> Result<Self, DomainError> {
        let mut profile = Self::default();
        profile.apply(attributes);
        profile.check_email()?;
        profile.check_account_key()?;
        profile.check_size(None, "profile")?;
        Ok(profile)
    }

    /// An account's attributes: no email required, the same limits.
    pub fn of_account(attributes: BTreeMap<String, String>) -> Result<Self, DomainError> {
        let mut profile = Self::default();
        profile.apply(attributes);
        profile.check_size(None, "attributes")?;
        Ok(profile)
    }

    /// An account's attributes with `changes` merged (an empty value
    /// removes one), within the limits.
    pub fn merge_account(&self, changes: BTreeMap<String, String>) -> Result<Self, DomainError> {
        let mut next = self.clone();
        next.apply(changes);
        next.check_size(Some(self), "attributes")?;
        Ok(next)
    }

    /// Merges changes: a non-empty value sets the attribute, an empty one
    /// removes it. Returns whether anything changed. The email can be changed
    /// but never removed (an IQL has given contact info). The merged profile
    /// must stay within [`MAX_ATTRIBUTES`] and [`MAX_PROFILE_BYTES`]; a
    /// profile already past them (kept from before the limits) is not cut,
    /// but a change that would make it larger is refused.
    pub fn merge(&self, changes: BTreeMap<String, String>) -> Result<(Self, bool), DomainError> {
        let mut next = self.clone();
        next.apply(changes);
        next.check_email()?;
        if next.get(ACCOUNT_KEY) != self.get(ACCOUNT_KEY) {
            next.check_account_key()?;
        }
        next.check_size(Some(self), "profile")?;
        let changed = next != *self;
        Ok((next, changed))
    }

    fn apply(&mut self, changes: BTreeMap<String, String>) {
        for (key, value) in changes {
            if key == EMAIL_DOMAIN {
                continue; // derived below
            }
            if value.trim().is_empty() {
                self.0.remove(&key);
            } else {
                self.0.insert(key, value);
            }
        }
        match self.0.get(EMAIL).and_then(|email| email_domain(email)) {
            Some(domain) => {
                self.0.insert(EMAIL_DOMAIN.to_owned(), domain);
            }
            None => {
                self.0.remove(EMAIL_DOMAIN);
            }
        }
    }

    fn check_email(&self) -> Result<(), DomainError> {
        let field = "profile.email";
        match self.0.get(EMAIL) {
            None => Err(DomainError::invalid(FieldViolation::new(
                field,
                "required: a lead is captured with a contact email (an empty value cannot remove it)",
            ))),
            Some(email) if !looks_like_email(email) => Err(DomainError::invalid(FieldViolation::new(
                field,
                format!("{email:?} is not an email address"),
            ))),
            Some(_) => Ok(()),
        }
    }

    /// An `account_key`, when given, is a key: at most 128 characters once
    /// trimmed, without control characters.
    fn check_account_key(&self) -> Result<(), DomainError> {
        let Some(key) = self.0.get(ACCOUNT_KEY).map(|k| k.trim()) else {
            return Ok(());
        };
        let chars = key.chars().count();
        let problem = if chars > MAX_ACCOUNT_KEY_CHARS {
            format!("{chars} characters; an account key has at most {MAX_ACCOUNT_KEY_CHARS}")
        } else if key.chars().any(char::is_control) {
            "an account key contains no control characters".to_owned()
        } else {
            return Ok(());
        };
        Err(DomainError::invalid(FieldViolation::new(
            "profile.account_key",
            problem,
        )))
    }

    /// Attributes and their bytes (names and values), the derived
    /// `email_domain` aside.
    fn size(&self) -> (usize, usize) {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() != EMAIL_DOMAIN)
            .fold((0, 0), |(n, bytes), (k, v)| (n + 1, bytes + k.len() + v.len()))
    }

    /// Within the limits, or no larger than `before` on the measure it passes.
    fn check_size(&self, before: Option<&Self>, field: &str) -> Result<(), DomainError> {
        let (count, bytes) = self.size();
        let (count_before, bytes_before) = before.map_or((0, 0), Self::size);
        let exceeded = |what, limit: usize, actual: usize| DomainError::LimitExceeded {
            field: field.to_owned(),
            what,
            limit: limit as u64,
            actual: actual as u64,
        };
        if count > MAX_ATTRIBUTES && count > count_before {
            return Err(exceeded("attributes", MAX_ATTRIBUTES, count));
        }
        if bytes > MAX_PROFILE_BYTES && bytes > bytes_before {
            return Err(exceeded("bytes of attributes", MAX_PROFILE_BYTES, bytes));
        }
        Ok(())
    }

    /// The attribute's value, if present.
    pub fn get(&self, attribute: &str) -> Option<&str> {
        self.0.get(attribute).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Rebuilds a profile read back from storage (already validated when written).
    pub fn from_stored(attributes: BTreeMap<String, String>) -> Self {
        Self(attributes)
    }
}

fn email_domain(email: &str) -> Option<String> {
    let (_, domain) = email.trim().rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_lowercase())
}

fn looks_like_email(email: &str) -> bool {
    let email = email.trim();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn email_domain_is_derived_lower_cased_after_the_last_at() {
        let p = Profile::capture(attrs(&[("email", "Ann@Sales@Acme.COM")])).expect("valid");
        assert_eq!(p.get(EMAIL_DOMAIN), Some("acme.com"));
    }

    #[test]
    fn a_caller_cannot_set_the_derived_domain() {
        let p = Profile::capture(attrs(&[("email", "a@acme.com"), ("email_domain", "x.io")])).expect("valid");
        assert_eq!(p.get(EMAIL_DOMAIN), Some("acme.com"));
    }

    #[test]
    fn capture_requires_an_email() {
        for bad in [
            attrs(&[("name", "Ann")]),
            attrs(&[("email", "  ")]),
            attrs(&[("email", "ann")]),
            attrs(&[("email", "a b@c.d")]),
        ] {
            let err = Profile::capture(bad).expect_err("refused");
            assert!(err.to_string().contains("profile.email"), "{err}");
        }
    }

    #[test]
    fn the_merged_profile_is_bounded() {
        let p = Profile::capture(attrs(&[("email", "a@acme.com")])).expect("valid");
        let many = |from: usize, n: usize, len: usize| -> BTreeMap<String, String> {
            (from..from + n)
                .map(|i| (format!("a{i}"), "v".repeat(len)))
                .collect()
        };
        // 63 more make 64 with the email: the limit, accepted.
        let (full, _) = p.merge(many(0, 63, 10)).expect("at the limit");
        let err = full.merge(many(100, 1, 10)).expect_err("one past the limit");
        assert!(
            matches!(
                err,
                DomainError::LimitExceeded {
                    what: "attributes",
                    limit: 64,
                    actual: 65,
                    ..
                }
            ),
            "{err:?}"
        );
        // Replacing one keeps the count.
        assert!(full.merge(attrs(&[("a0", "w")])).is_ok());
        let err = p.merge(many(0, 40, 2_000)).expect_err("too many bytes");
        assert!(
            matches!(
                err,
                DomainError::LimitExceeded {
                    what: "bytes of attributes",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Profile::capture(
            many(0, 70, 1)
                .into_iter()
                .chain(attrs(&[("email", "a@b.c")]))
                .collect(),
        )
        .expect_err("capture is bounded too");
        assert!(matches!(err, DomainError::LimitExceeded { .. }), "{err:?}");
    }

    #[test]
    fn a_profile_past_the_limits_may_shrink_but_not_grow() {
        let mut map = attrs(&[("email", "a@acme.com")]);
        map.extend((0..100).map(|i| (format!("a{i}"), "v".repeat(1_000))));
        let big = Profile::from_stored(map);
        let (smaller, changed) = big.merge(attrs(&[("a0", ""), ("a1", "")])).expect("removals");
        assert!(changed);
        assert_eq!(smaller.get("a0"), None);
        // 98 left beside the email, and the derived domain.
        assert_eq!(smaller.len(), 100);
        assert!(big.merge(attrs(&[("a2", "short")])).is_ok(), "a smaller value");
        assert!(big.merge(attrs(&[("new", "v")])).is_err(), "one more attribute");
        assert!(
            big.merge(attrs(&[("a2", &"v".repeat(1_001))])).is_err(),
            "more bytes"
        );
    }

    #[test]
    fn merge_sets_and_removes_and_reports_change() {
        let p = Profile::capture(attrs(&[("email", "a@acme.com"), ("title", "CTO")])).expect("valid");
        let (q, changed) = p
            .merge(attrs(&[("title", ""), ("company", "Acme")]))
            .expect("valid");
        assert!(changed);
        assert_eq!(q.get("title"), None);
        assert_eq!(q.get("company"), Some("Acme"));
        let (_, changed) = q.merge(attrs(&[("company", "Acme")])).expect("valid");
        assert!(!changed);
        assert!(q.merge(attrs(&[("email", "")])).is_err());
    }
}
