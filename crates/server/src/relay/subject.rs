//! Where an event goes in JetStream: its subject, `leadflow.<workspace>.
//! <kind>.<detail>`, and its headers.
//!
//! | kind | `<kind>` | `<detail>` |
//! | --- | --- | --- |
//! | TRANSITION | `transition` | the stage entered (`MQL`) |
//! | TRIGGER | `trigger` | the workflow id |
//! | SLA_BREACHED | `sla_breached` | the SLA id |
//! | ACCOUNT_TRANSITION | `account_transition` | the account stage entered (`MQA`) |
//! | ACCOUNT_TRIGGER | `account_trigger` | the workflow id |
//! | WEBHOOK_DISABLED | `webhook_disabled` | the webhook id |
//! | LEVEL_CHANGED, LEAD_ERASED, LEAD_MERGED, LEAD_UNMERGED, LEAD_ASSIGNED, LEAD_UNROUTED | the kind in lower case | `_` |
//!
//! Every token is escaped: ASCII letters, digits, `-` and `_` stay, every
//! other byte (of the UTF-8) becomes `%` and two upper-case hex digits, so
//! `.`, `*`, `>`, spaces and `%` itself never reach a subject as they are.
//! A detail that is just `_` is escaped to `%5F`, so the fixed token means
//! "no detail" only.

use std::fmt::Write as _;

use leadflow_engine::{Payload, StreamEvent};

/// Every subject starts so; the stream leadflow creates takes `leadflow.>`.
pub const PREFIX: &str = "leadflow";
/// The detail of kinds without a stage, workflow or SLA.
pub const NO_DETAIL: &str = "_";

/// `token` escaped for a subject (see the module's rule).
pub fn escape(token: &str) -> String {
    if token == NO_DETAIL {
        return "%5F".to_owned();
    }
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.is_empty() {
        // An empty token would make an invalid subject; ids are never empty.
        out.push('%');
    }
    out
}

/// The raw detail of an event: the stage entered, the workflow id, the SLA
/// id, or `None` for kinds with neither.
pub(super) fn detail(e: &StreamEvent) -> Option<String> {
    match &e.payload {
        Payload::Lead(p) => match e.kind.as_str() {
            "TRANSITION" => p.transition.as_ref().map(|t| t.record.to.as_str().to_owned()),
            "TRIGGER" => p.trigger.as_ref().map(|t| t.workflow_id.clone()),
            "SLA_BREACHED" => p.sla_breach.as_ref().map(|b| b.sla_id.clone()),
            _ => None,
        },
        Payload::Account(a) => match e.kind.as_str() {
            "ACCOUNT_TRANSITION" => a.transition.as_ref().map(|t| t.record.to.as_str().to_owned()),
            "ACCOUNT_TRIGGER" => a.trigger.as_ref().map(|t| t.workflow_id.clone()),
            _ => None,
        },
        Payload::Webhook(w) => Some(w.webhook_id.clone()),
    }
}

/// The subject of `e` in workspace `ws`.
pub fn subject(ws: &str, e: &StreamEvent) -> String {
    let detail = detail(e).map_or_else(|| NO_DETAIL.to_owned(), |d| escape(&d));
    format!(
        "{PREFIX}.{}.{}.{detail}",
        escape(ws),
        escape(&e.kind.to_ascii_lowercase())
    )
}

/// The headers of `e`: `Nats-Msg-Id` (the event id), the content type and
/// schema of the body, `traceparent`, and the raw ids.
pub(super) fn headers(ws: &str, e: &StreamEvent) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, e.event_id.as_str());
    h.insert("Content-Type", "application/protobuf");
    h.insert("Leadflow-Schema", "leadflow.v1.Event");
    h.insert("Leadflow-Workspace", ws);
    h.insert("Leadflow-Kind", e.kind.as_str());
    h.insert("Leadflow-Sequence", e.seq.to_string().as_str());
    let (whose, id) = e.owner();
    h.insert(
        match whose {
            "lead" => "Leadflow-Lead-Id",
            "account" => "Leadflow-Account-Id",
            _ => "Leadflow-Webhook-Id",
        },
        id,
    );
    if let Some(d) = detail(e) {
        h.insert("Leadflow-Detail", d.as_str());
    }
    if let Some(tp) = &e.traceparent {
        h.insert("traceparent", tp.as_str());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_plain_ids_and_escape_the_rest() {
        assert_eq!(escape("acme-eu_1"), "acme-eu_1");
        assert_eq!(escape("MQL"), "MQL");
        assert_eq!(escape("nurture.mql"), "nurture%2Emql");
        assert_eq!(escape("a*b>c d"), "a%2Ab%3Ec%20d");
        assert_eq!(escape("50%"), "50%25");
        assert_eq!(escape("tab\there"), "tab%09here");
        assert_eq!(escape("é"), "%C3%A9");
        // The fixed token stays the fixed token's only spelling.
        assert_eq!(escape("_"), "%5F");
        assert_eq!(escape("__"), "__");
        for token in ["nurture.mql", "a*b>c d", "50%", "é", "_", "x y.z"] {
            let escaped = escape(token);
            assert!(
                escaped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'%')),
                "{escaped}"
            );
            assert_eq!(unescape(&escaped), token);
        }
    }

    #[test]
    fn a_disabled_webhook_is_its_own_subject() {
        let e = StreamEvent {
            seq: 9,
            event_id: "e9".to_owned(),
            kind: "WEBHOOK_DISABLED".to_owned(),
            occurred_at: leadflow_domain::Timestamp::from_secs(1),
            committed_at: leadflow_domain::Timestamp::from_secs(1),
            traceparent: None,
            suppressed: false,
            payload: Payload::Webhook(Box::new(leadflow_engine::WebhookPayload {
                webhook_id: "wh.1".to_owned(),
                url: "https://crm.example/hooks".to_owned(),
                reason: "every delivery failed for 24 h".to_owned(),
                failing_since: leadflow_domain::Timestamp::from_secs(0),
                open_deliveries: 3,
            })),
            wire: std::sync::OnceLock::new(),
        };
        assert_eq!(subject("acme", &e), "leadflow.acme.webhook_disabled.wh%2E1");
        assert_eq!(e.owner(), ("webhook", "wh.1"));
        let h = headers("acme", &e);
        assert_eq!(h.get("Leadflow-Webhook-Id").map(|v| v.as_str()), Some("wh.1"));
        assert_eq!(h.get("Leadflow-Detail").map(|v| v.as_str()), Some("wh.1"));
        assert!(h.get("Leadflow-Lead-Id").is_none());
    }

    /// The documented rule, reversed: what a consumer does to get an id back.
    fn unescape(token: &str) -> String {
        let bytes = token.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
