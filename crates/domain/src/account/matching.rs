//! How a lead finds its account: the policy's `[accounts] match` order —
//! the caller's explicit key, then the email domain — and what an account a
//! match creates copies from the lead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::named::named_enum;
use crate::policy::{Accounts, Matcher};
use crate::profile::{EMAIL_DOMAIN, Profile};

pub use crate::profile::ACCOUNT_KEY;

/// The longest domain there is (DNS): a longer one is matched to nothing.
const MAX_DOMAIN_BYTES: usize = 253;

/// Free and personal mail domains, never matched by email domain: a person
/// at gmail.com is not an account. Sorted; `[accounts] ignore_domains` adds
/// more.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "126.com",
    "163.com",
    "aim.com",
    "aol.com",
    "att.net",
    "bellsouth.net",
    "btinternet.com",
    "comcast.net",
    "cox.net",
    "email.com",
    "fastmail.com",
    "fastmail.fm",
    "free.fr",
    "gmail.com",
    "gmx.at",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.fr",
    "hotmail.it",
    "icloud.com",
    "inbox.com",
    "laposte.net",
    "libero.it",
    "live.co.uk",
    "live.com",
    "live.fr",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "outlook.com",
    "outlook.de",
    "outlook.fr",
    "pm.me",
    "proton.me",
    "protonmail.ch",
    "protonmail.com",
    "qq.com",
    "rediffmail.com",
    "rocketmail.com",
    "sbcglobal.net",
    "seznam.cz",
    "sfr.fr",
    "t-online.de",
    "tuta.io",
    "tutanota.com",
    "verizon.net",
    "wanadoo.fr",
    "web.de",
    "yahoo.co.in",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.de",
    "yahoo.es",
    "yahoo.fr",
    "yahoo.it",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

named_enum! {
    /// How a lead was linked to its account.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub enum MatchedBy as "match" {
        /// The caller's `profile.account_key`.
        AccountKey = "account_key",
        /// The lead's email domain.
        EmailDomain = "email_domain",
        /// `LinkLead`: never undone automatically.
        Manual = "manual",
    }
}

/// What a matcher looks an account up by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchKey {
    /// An account's external key.
    External(String),
    /// An account's domain, lower-cased.
    Domain(String),
}

/// A lead's automatic match: the first matcher of the policy's order that
/// applies, with the key to look the account up by. An applicable matcher
/// decides even when no account has its key yet (that account is created,
/// or the lead stays unmatched): a lead with an `account_key` never falls
/// through to its domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub by: MatchedBy,
    pub key: MatchKey,
}

/// Whether a domain is a free or personal mail domain, or one the policy
/// ignores.
pub fn is_ignored_domain(accounts: &Accounts, domain: &str) -> bool {
    FREE_MAIL_DOMAINS.binary_search(&domain).is_ok() || accounts.ignore_domains.contains(domain)
}

/// The lead's match under `[accounts] match`; `None` when no matcher applies.
pub fn match_lead(accounts: &Accounts, profile: &Profile) -> Option<Match> {
    accounts.matchers.iter().find_map(|matcher| match matcher {
        Matcher::AccountKey => profile
            .get(ACCOUNT_KEY)
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(|key| Match {
                by: MatchedBy::AccountKey,
                key: MatchKey::External(key.to_owned()),
            }),
        Matcher::EmailDomain => profile
            .get(EMAIL_DOMAIN)
            .filter(|domain| domain.len() <= MAX_DOMAIN_BYTES && !is_ignored_domain(accounts, domain))
            .map(|domain| Match {
                by: MatchedBy::EmailDomain,
                key: MatchKey::Domain(domain.to_owned()),
            }),
    })
}

/// The attributes an account created by a lead's match copies from it:
/// those `[accounts] inherit` lists that the lead has.
pub fn inherited(accounts: &Accounts, profile: &Profile) -> BTreeMap<String, String> {
    accounts
        .inherit
        .iter()
        .filter_map(|name| profile.get(name).map(|v| (name.clone(), v.to_owned())))
        .collect()
}

/// The domain an account created by a lead's match gets: the matched
/// domain, or, for a match by key, the lead's email domain when it is not
/// free mail (it may belong to another account already: the store leaves
/// the new account without one then).
pub fn created_domain(accounts: &Accounts, found: &Match, profile: &Profile) -> Option<String> {
    match &found.key {
        MatchKey::Domain(domain) => Some(domain.clone()),
        MatchKey::External(_) => profile
            .get(EMAIL_DOMAIN)
            .filter(|d| d.len() <= MAX_DOMAIN_BYTES && !is_ignored_domain(accounts, d))
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_mail_list_is_sorted_lower_case_and_distinct() {
        assert!(FREE_MAIL_DOMAINS.windows(2).all(|w| w[0] < w[1]));
        assert!(
            FREE_MAIL_DOMAINS
                .iter()
                .all(|d| d.to_lowercase() == *d && d.contains('.'))
        );
    }
}
