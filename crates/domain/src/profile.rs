//! A lead's profile: string attributes, with `email_domain` derived from `email`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, FieldViolation};

pub const EMAIL: &str = "email";
pub const EMAIL_DOMAIN: &str = "email_domain";

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
        Ok(profile)
    }

    /// Merges changes: a non-empty value sets the attribute, an empty one
    /// removes it. Returns whether anything changed. The email can be changed
    /// but never removed (an IQL has given contact info).
    pub fn merge(&self, changes: BTreeMap<String, String>) -> Result<(Self, bool), DomainError> {
        let mut next = self.clone();
        next.apply(changes);
        next.check_email()?;
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
