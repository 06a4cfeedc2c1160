//! Every method the server answers, in one table: the scope a token needs,
//! whether the call counts against the calls in flight, how a retry is
//! recognised, and whether the call stays open. Authentication, admission
//! and metrics read it; a test checks it against the methods served, so a
//! new RPC cannot be added without its row.

use leadflow_engine::Method;

/// What a method asks of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// None: health checks and reflection, which carry no data.
    Open,
    /// A token with this scope.
    Needs(&'static str),
}

/// Whether a call takes one of the calls-in-flight permits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A unit of database work, answered promptly.
    Counted,
    /// Not counted: streams that may sit idle (an upload applies one
    /// message at a time, never more than one unit of work of its own),
    /// health checks, and reads that are not on the write path.
    Free,
}

/// How a retry of the call is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// By its `request_id`: the first result is kept under this name.
    RequestId(Method),
    /// By each engagement's `event_id`.
    EventId,
    /// A repeat has the effect of the first call (reads, erasing,
    /// acknowledging, deleting a consumer).
    Repeatable,
}

impl Retry {
    /// As spans and logs say it: `request_id`, `event_id`, `repeatable`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::RequestId(_) => "request_id",
            Self::EventId => "event_id",
            Self::Repeatable => "repeatable",
        }
    }
}

/// One method's row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rpc {
    pub(crate) service: &'static str,
    pub(crate) method: &'static str,
    pub(crate) scope: Scope,
    pub(crate) admission: Admission,
    pub(crate) retry: Retry,
    /// A stream that stays open: its token is checked again while it lasts.
    pub(crate) long_lived: bool,
}

const fn rpc(
    service: &'static str,
    method: &'static str,
    scope: Scope,
    admission: Admission,
    retry: Retry,
) -> Rpc {
    Rpc {
        service,
        method,
        scope,
        admission,
        retry,
        long_lived: false,
    }
}

const fn stream(service: &'static str, method: &'static str, scope: Scope, retry: Retry) -> Rpc {
    Rpc {
        long_lived: true,
        ..rpc(service, method, scope, Admission::Free, retry)
    }
}

const LEADS: &str = "leadflow.v1.LeadService";
const POLICIES: &str = "leadflow.v1.PolicyService";
const TRIGGERS: &str = "leadflow.v1.TriggerService";
const ANALYTICS: &str = "leadflow.v1.AnalyticsService";
const ACCOUNTS: &str = "leadflow.v1.AccountService";
const OWNERS: &str = "leadflow.v1.OwnerService";
const WEBHOOKS: &str = "leadflow.v1.WebhookService";
const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

const READ_LEADS: Scope = Scope::Needs("leads:read");
const WRITE_LEADS: Scope = Scope::Needs("leads:write");
const ENGAGEMENTS: Scope = Scope::Needs("engagements:write");
const POLICY: Scope = Scope::Needs("policy:admin");
const SUBSCRIBE: Scope = Scope::Needs("triggers:subscribe");
const ANALYSE: Scope = Scope::Needs("analytics:read");
const READ_ACCOUNTS: Scope = Scope::Needs("accounts:read");
const WRITE_ACCOUNTS: Scope = Scope::Needs("accounts:write");
const OWNERS_ADMIN: Scope = Scope::Needs("owners:admin");
const WEBHOOKS_ADMIN: Scope = Scope::Needs("webhooks:admin");

use Admission::{Counted, Free};
use Retry::{EventId, Repeatable, RequestId};

/// Every method served.
pub(crate) const RPCS: &[Rpc] = &[
    rpc(
        LEADS,
        "CreateLead",
        WRITE_LEADS,
        Counted,
        RequestId(Method::CreateLead),
    ),
    rpc(LEADS, "GetLead", READ_LEADS, Counted, Repeatable),
    rpc(LEADS, "ListLeads", READ_LEADS, Counted, Repeatable),
    rpc(
        LEADS,
        "UpdateLeadProfile",
        WRITE_LEADS,
        Counted,
        RequestId(Method::UpdateLeadProfile),
    ),
    rpc(LEADS, "RecordEngagement", ENGAGEMENTS, Counted, EventId),
    rpc(LEADS, "RecordEngagements", ENGAGEMENTS, Counted, EventId),
    stream(LEADS, "StreamEngagements", ENGAGEMENTS, EventId),
    rpc(
        LEADS,
        "Transition",
        Scope::Needs("transitions:write"),
        Counted,
        RequestId(Method::Transition),
    ),
    rpc(LEADS, "GetLeadHistory", READ_LEADS, Counted, Repeatable),
    rpc(LEADS, "ExplainScore", READ_LEADS, Counted, Repeatable),
    rpc(LEADS, "EraseLead", WRITE_LEADS, Counted, Repeatable),
    rpc(LEADS, "EraseAnonymous", WRITE_LEADS, Counted, Repeatable),
    rpc(
        LEADS,
        "IdentifyLead",
        WRITE_LEADS,
        Counted,
        RequestId(Method::IdentifyLead),
    ),
    rpc(
        LEADS,
        "MergeLeads",
        WRITE_LEADS,
        Counted,
        RequestId(Method::MergeLeads),
    ),
    rpc(LEADS, "FindDuplicates", READ_LEADS, Counted, Repeatable),
    rpc(
        LEADS,
        "AssignLead",
        WRITE_LEADS,
        Counted,
        RequestId(Method::AssignLead),
    ),
    rpc(
        LEADS,
        "UnmergeLead",
        WRITE_LEADS,
        Counted,
        RequestId(Method::UnmergeLead),
    ),
    rpc(POLICIES, "ValidatePolicy", POLICY, Counted, Repeatable),
    rpc(
        POLICIES,
        "CreatePolicyVersion",
        POLICY,
        Counted,
        RequestId(Method::CreatePolicyVersion),
    ),
    rpc(POLICIES, "ListPolicyVersions", POLICY, Counted, Repeatable),
    rpc(POLICIES, "GetActivePolicy", POLICY, Counted, Repeatable),
    rpc(POLICIES, "SimulatePolicy", POLICY, Counted, Repeatable),
    rpc(
        POLICIES,
        "ActivatePolicy",
        POLICY,
        Counted,
        RequestId(Method::ActivatePolicy),
    ),
    stream(POLICIES, "WatchRescore", POLICY, Repeatable),
    stream(TRIGGERS, "Subscribe", SUBSCRIBE, Repeatable),
    rpc(TRIGGERS, "Ack", SUBSCRIBE, Free, Repeatable),
    rpc(TRIGGERS, "ListConsumers", SUBSCRIBE, Free, Repeatable),
    rpc(TRIGGERS, "DeleteConsumer", SUBSCRIBE, Free, Repeatable),
    rpc(ANALYTICS, "GetFunnel", ANALYSE, Free, Repeatable),
    rpc(ANALYTICS, "GetRuleReport", ANALYSE, Free, Repeatable),
    rpc(ANALYTICS, "CalibrateThreshold", ANALYSE, Free, Repeatable),
    stream(ANALYTICS, "LearnPolicy", POLICY, RequestId(Method::LearnPolicy)),
    rpc(ANALYTICS, "GetLearnReport", ANALYSE, Free, Repeatable),
    rpc(
        ACCOUNTS,
        "CreateAccount",
        WRITE_ACCOUNTS,
        Counted,
        RequestId(Method::CreateAccount),
    ),
    rpc(
        OWNERS,
        "CreateOwner",
        OWNERS_ADMIN,
        Counted,
        RequestId(Method::CreateOwner),
    ),
    rpc(
        OWNERS,
        "UpdateOwner",
        OWNERS_ADMIN,
        Counted,
        RequestId(Method::UpdateOwner),
    ),
    rpc(OWNERS, "GetOwner", OWNERS_ADMIN, Counted, Repeatable),
    rpc(OWNERS, "ListOwners", OWNERS_ADMIN, Counted, Repeatable),
    rpc(
        WEBHOOKS,
        "CreateWebhook",
        WEBHOOKS_ADMIN,
        Counted,
        RequestId(Method::CreateWebhook),
    ),
    rpc(WEBHOOKS, "ListWebhooks", WEBHOOKS_ADMIN, Counted, Repeatable),
    rpc(WEBHOOKS, "DeleteWebhook", WEBHOOKS_ADMIN, Counted, Repeatable),
    rpc(
        WEBHOOKS,
        "RotateWebhookSecret",
        WEBHOOKS_ADMIN,
        Counted,
        Repeatable,
    ),
    rpc(WEBHOOKS, "ListDeliveries", WEBHOOKS_ADMIN, Counted, Repeatable),
    rpc(WEBHOOKS, "RetryDelivery", WEBHOOKS_ADMIN, Counted, Repeatable),
    rpc(WEBHOOKS, "SkipDelivery", WEBHOOKS_ADMIN, Counted, Repeatable),
    rpc(ACCOUNTS, "GetAccount", READ_ACCOUNTS, Counted, Repeatable),
    rpc(ACCOUNTS, "ListAccounts", READ_ACCOUNTS, Counted, Repeatable),
    rpc(
        ACCOUNTS,
        "UpdateAccount",
        WRITE_ACCOUNTS,
        Counted,
        RequestId(Method::UpdateAccount),
    ),
    rpc(
        ACCOUNTS,
        "LinkLead",
        WRITE_ACCOUNTS,
        Counted,
        RequestId(Method::LinkLead),
    ),
    rpc(
        ACCOUNTS,
        "UnlinkLead",
        WRITE_ACCOUNTS,
        Counted,
        RequestId(Method::UnlinkLead),
    ),
    rpc(
        ACCOUNTS,
        "TransitionAccount",
        WRITE_ACCOUNTS,
        Counted,
        RequestId(Method::TransitionAccount),
    ),
    rpc(ACCOUNTS, "GetAccountHistory", READ_ACCOUNTS, Counted, Repeatable),
    rpc(ACCOUNTS, "ExplainAccount", READ_ACCOUNTS, Counted, Repeatable),
    rpc(HEALTH, "Check", Scope::Open, Free, Repeatable),
    stream(HEALTH, "Watch", Scope::Open, Repeatable),
    stream(REFLECTION, "ServerReflectionInfo", Scope::Open, Repeatable),
    stream(REFLECTION_ALPHA, "ServerReflectionInfo", Scope::Open, Repeatable),
];

/// What the table says of a request path.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    Known(&'static Rpc),
    /// A leadflow method missing from the table: refused to every token,
    /// never open to any.
    Unlisted,
    /// Not a method of any service here (the router answers UNIMPLEMENTED).
    Unknown,
}

/// The row of `path` (`/package.Service/Method`).
pub(crate) fn lookup(path: &str) -> Lookup {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Lookup::Unknown;
    };
    match RPCS.iter().find(|r| r.service == service && r.method == method) {
        Some(rpc) => Lookup::Known(rpc),
        None if service.starts_with("leadflow.") => Lookup::Unlisted,
        None => Lookup::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// Every method the server serves, from the descriptors it serves: a
    /// new RPC without a row, or a row for a method no longer served,
    /// fails here.
    #[test]
    fn the_table_has_a_row_for_every_served_method_and_no_other() {
        let mut served = Vec::new();
        for set in [
            leadflow_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).expect("a descriptor set");
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        served.push((
                            format!("{}.{}", file.package(), service.name()),
                            method.name().to_owned(),
                            method.client_streaming() || method.server_streaming(),
                        ));
                    }
                }
            }
        }
        for (service, method, streams) in &served {
            let path = format!("/{service}/{method}");
            let Lookup::Known(rpc) = lookup(&path) else {
                panic!("{path} has no row in the method table");
            };
            assert_eq!(
                rpc.long_lived, *streams,
                "{path}: a stream stays open, a unary call does not"
            );
            if let Scope::Needs(scope) = rpc.scope {
                assert!(crate::auth::SCOPES.contains(&scope), "{path}: {scope}");
            }
            if service.starts_with("leadflow.") {
                assert_ne!(rpc.scope, Scope::Open, "{path} carries data: it needs a scope");
            }
        }
        for rpc in RPCS {
            assert!(
                served.iter().any(|(s, m, _)| s == rpc.service && m == rpc.method),
                "{}/{} is in the table but not served",
                rpc.service,
                rpc.method
            );
        }
        assert!(served.len() >= 27, "{} methods served", served.len());
    }

    #[test]
    fn every_idempotent_method_has_its_row() {
        for method in Method::ALL {
            assert!(
                RPCS.iter()
                    .any(|r| r.retry == Retry::RequestId(method) && r.method == method.as_str()),
                "{method} is kept by request id under the name of its RPC"
            );
        }
    }

    #[test]
    fn unknown_paths_are_told_apart() {
        assert!(matches!(
            lookup("/leadflow.v1.LeadService/NoSuch"),
            Lookup::Unlisted
        ));
        assert!(matches!(lookup("/other.Service/Method"), Lookup::Unknown));
        assert!(matches!(lookup("nonsense"), Lookup::Unknown));
        assert!(matches!(lookup("/grpc.health.v1.Health/Check"), Lookup::Known(_)));
    }
}
