//! The names stages, moves, commands, guards and causes are stored and sent
//! by. Databases hold them and clients match on them: none may change.

use leadflow_domain::lifecycle::Guard;
use leadflow_domain::{Cause, CommandKind, Move, Stage};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Each variant's name through `as_str`, `Display`, serde and (where there
/// is one) `FromStr` is the pinned one.
fn pinned<T>(all: &[T], names: &[&str], as_str: fn(&T) -> &'static str)
where
    T: Serialize + DeserializeOwned + std::fmt::Display + std::fmt::Debug + PartialEq,
{
    assert_eq!(all.len(), names.len(), "{all:?}");
    for (value, name) in all.iter().zip(names) {
        assert_eq!(as_str(value), *name);
        assert_eq!(value.to_string(), *name);
        let json = serde_json::to_string(value).expect("serialises");
        assert_eq!(json, format!("\"{name}\""));
        assert_eq!(&serde_json::from_str::<T>(&json).expect("deserialises"), value);
    }
}

#[test]
fn stage_names_are_pinned() {
    let names = ["IQL", "MQL", "SQL", "CUSTOMER", "DISQUALIFIED", "MERGED"];
    pinned(&Stage::ALL, &names, |s| s.as_str());
    for (stage, name) in Stage::ALL.into_iter().zip(names) {
        assert_eq!(name.parse::<Stage>(), Ok(stage));
    }
    let err = "Mql".parse::<Stage>().expect_err("names are case-sensitive");
    assert_eq!(
        err.to_string(),
        "unknown stage \"Mql\" (expected one of IQL, MQL, SQL, CUSTOMER, DISQUALIFIED, MERGED)"
    );
    assert!(serde_json::from_str::<Stage>("\"Mql\"").is_err());
}

#[test]
fn move_names_are_pinned() {
    let names = [
        "CAPTURE",
        "PROMOTE",
        "ACCEPT",
        "REJECT",
        "RECYCLE",
        "CONVERT",
        "DISQUALIFY",
        "REQUALIFY",
        "AUTO_QUALIFY",
        "SALES_READY",
        "AUTO_DISQUALIFY",
        "SLA_RECYCLE",
        "MERGE",
        "MERGED_INTO",
        "UNMERGE",
    ];
    pinned(&Move::ALL, &names, |m| m.as_str());
    assert_eq!("SLA_RECYCLE".parse::<Move>(), Ok(Move::SlaRecycle));
    assert!("SlaRecycle".parse::<Move>().is_err());
}

#[test]
fn command_names_are_pinned() {
    let names = [
        "CAPTURE",
        "RECORD_ENGAGEMENT",
        "UPDATE_PROFILE",
        "PROMOTE",
        "ACCEPT",
        "REJECT",
        "RECYCLE",
        "CONVERT",
        "DISQUALIFY",
        "REQUALIFY",
        "TIMER_FIRED",
        "POLICY_CHANGED",
        "IDENTIFY",
        "MERGE",
        "UNMERGE",
    ];
    pinned(&CommandKind::ALL, &names, |c| c.as_str());
}

#[test]
fn guard_names_are_pinned() {
    let names = [
        "engagement_at_least",
        "fit_at_least",
        "grade_at_least",
        "requires_attributes",
        "not_disqualified",
        "sales_ready_action",
        "no_disqualifying_attribute",
        "disqualifying_match",
    ];
    pinned(&Guard::ALL, &names, |g| g.as_str());
}

#[test]
fn causes_are_tagged_with_their_pinned_kind() {
    let causes = [
        (Cause::Capture, r#"{"kind":"CAPTURE"}"#),
        (
            Cause::Engagement {
                event_id: "e1".to_owned(),
            },
            r#"{"kind":"ENGAGEMENT","event_id":"e1"}"#,
        ),
        (Cause::ProfileUpdate, r#"{"kind":"PROFILE_UPDATE"}"#),
        (Cause::Manual, r#"{"kind":"MANUAL"}"#),
        (
            Cause::Timer {
                key: "sla:mql_idle".to_owned(),
            },
            r#"{"kind":"TIMER","key":"sla:mql_idle"}"#,
        ),
        (Cause::PolicyChange, r#"{"kind":"POLICY_CHANGE"}"#),
        (Cause::Decay, r#"{"kind":"DECAY"}"#),
        (
            Cause::Identify {
                anonymous_id: "cookie-1".to_owned(),
            },
            r#"{"kind":"IDENTIFY","anonymous_id":"cookie-1"}"#,
        ),
        (
            Cause::Merge {
                lead_id: "L2".to_owned(),
            },
            r#"{"kind":"MERGE","lead_id":"L2"}"#,
        ),
        (
            Cause::Unmerge {
                lead_id: "L2".to_owned(),
            },
            r#"{"kind":"UNMERGE","lead_id":"L2"}"#,
        ),
    ];
    for (cause, json) in causes {
        assert_eq!(serde_json::to_string(&cause).expect("serialises"), json);
        assert_eq!(serde_json::from_str::<Cause>(json).expect("deserialises"), cause);
        let kind = json.split('"').nth(3).expect("the kind");
        assert_eq!((cause.as_str(), cause.to_string()), (kind, kind.to_owned()));
    }
}
