"""A Python client generated from proto/ by grpcio-tools talks to a running leadflow.

Usage: python_check.py HOST:PORT GENERATED_DIR
"""

import sys
import time
import uuid

target, generated = sys.argv[1], sys.argv[2]
sys.path.insert(0, generated)

import grpc  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402

from leadflow.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc  # noqa: E402


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {message}")


channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=30)

health = health_pb2_grpc.HealthStub(channel)
for service in ("", "leadflow.v1.LeadService"):
    status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
    check(status == health_pb2.HealthCheckResponse.SERVING, f"health of {service or 'the server'} is SERVING")

reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
services = {s.name for s in answer.list_services_response.service}
for name in ("leadflow.v1.LeadService", "leadflow.v1.PolicyService", "leadflow.v1.TriggerService", "grpc.health.v1.Health"):
    check(name in services, f"reflection lists {name}")

leads = lead_service_pb2_grpc.LeadServiceStub(channel)
email = f"py-{uuid.uuid4().hex[:8]}@acme.com"
created = leads.CreateLead(
    lead_service_pb2.CreateLeadRequest(
        request_id=str(uuid.uuid4()),
        profile={"email": email, "company": "Acme", "title": "CTO", "company_size": "500"},
    )
)
lead = created.lead
check(lead.stage == lead_pb2.STAGE_IQL, "CreateLead captures at IQL")
check(lead.scores.fit == 30.0, f"fit is scored ({lead.scores.fit})")

now = timestamp_pb2.Timestamp()
now.FromSeconds(int(time.time()) - 1)
recorded = leads.RecordEngagement(
    lead_service_pb2.RecordEngagementRequest(
        lead=lead_pb2.LeadRef(id=lead.id),
        engagement=lead_pb2.Engagement(event_id=str(uuid.uuid4()), type="demo_requested", occurred_at=now),
    )
)
stages = [(t.from_stage, t.to_stage) for t in recorded.transitions]
check(
    stages == [(lead_pb2.STAGE_IQL, lead_pb2.STAGE_MQL), (lead_pb2.STAGE_MQL, lead_pb2.STAGE_SQL)],
    "RecordEngagement of a demo request moves the lead through MQL to SQL",
)

try:
    leads.RecordEngagement(
        lead_service_pb2.RecordEngagementRequest(
            lead=lead_pb2.LeadRef(id=lead.id),
            engagement=lead_pb2.Engagement(event_id="x", type="no_such_type"),
        )
    )
    check(False, "an unknown engagement type is refused")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"an unknown engagement type is INVALID_ARGUMENT ({e.details()})")

from leadflow.v1 import trigger_service_pb2 as ts, trigger_service_pb2_grpc  # noqa: E402

triggers = trigger_service_pb2_grpc.TriggerServiceStub(channel)
stream = triggers.Subscribe(
    ts.SubscribeRequest(
        consumer="python-check",
        start=ts.START_POSITION_EARLIEST,
        filter=ts.EventFilter(kinds=[ts.EVENT_KIND_TRANSITION], stages=[lead_pb2.STAGE_SQL]),
    ),
    timeout=10,
)
first = next(iter(stream))
check(first.HasField("event") and first.event.lead.id == lead.id, "Subscribe streams the move to SQL")
check(first.event.transition.to_stage == lead_pb2.STAGE_SQL, "the filter lets only SQL transitions through")
acked = triggers.Ack(ts.AckRequest(consumer="python-check", sequence=first.event.sequence))
check(acked.consumer.cursor == first.event.sequence, "Ack moves the consumer's cursor")
stream.cancel()

# Accounts: a policy with [accounts], a target account loaded ahead, two
# people of it engaging, the account an MQA, explained, accepted, streamed.
from leadflow.v1 import account_service_pb2 as acc, account_service_pb2_grpc  # noqa: E402
from leadflow.v1 import policy_service_pb2, policy_service_pb2_grpc  # noqa: E402

with open("examples/policy.toml", encoding="utf-8") as f:
    source = f.read().replace(
        "[reasons]\n", '[reasons]\nreject_account = ["not_ready"]\nrecycle_account = ["lost"]\n', 1
    )
source += """
[[persona]]
id = "decision_maker"
attribute = "title"
matches = "(?i)\\\\b(vp|head|director|chief|cto)\\\\b"

[accounts]
engaged_at_least = 20

[stages.MQA]
engagement_at_least = 50
engaged_members_at_least = 2
personas_required = ["decision_maker"]
"""
policies = policy_service_pb2_grpc.PolicyServiceStub(channel)
version = policies.CreatePolicyVersion(policy_service_pb2.CreatePolicyVersionRequest(source=source)).policy.version
policies.ActivatePolicy(policy_service_pb2.ActivatePolicyRequest(version=version))
check(True, f"a policy with [accounts] is active (version {version})")

accounts = account_service_pb2_grpc.AccountServiceStub(channel)
tag = uuid.uuid4().hex[:8]
domain = f"py{tag}.example"
loaded = accounts.CreateAccount(
    acc.CreateAccountRequest(request_id=str(uuid.uuid4()), external_key=f"crm-{tag}", domain=domain)
)
check(loaded.account.stage == acc.ACCOUNT_STAGE_TARGET, "CreateAccount loads a target account")
check([t.move for t in loaded.transitions] == ["CREATE"], "its creation is a CREATE transition")
people = []
for name, title in (("cto", "CTO"), ("dev", "Developer")):
    person = leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(
            profile={"email": f"{name}@{domain}", "company": "Py", "title": title, "company_size": "500"}
        )
    ).lead
    people.append(person)
    leads.RecordEngagement(
        lead_service_pb2.RecordEngagementRequest(
            lead=lead_pb2.LeadRef(id=person.id),
            engagement=lead_pb2.Engagement(event_id=str(uuid.uuid4()), type="trial_started", occurred_at=now),
        )
    )
got = accounts.GetAccount(acc.GetAccountRequest(account=acc.AccountRef(domain=domain.upper()))).account
check(got.id == loaded.account.id, "GetAccount finds it by domain, whatever the case")
check(got.stage == acc.ACCOUNT_STAGE_MQA, f"two engaged people with a decision maker make it an MQA ({got.engagement})")
check(got.engaged_members == 2 and got.personas.get("decision_maker") == 1, "its buying group is counted by persona")
member = leads.GetLead(lead_service_pb2.GetLeadRequest(lead=lead_pb2.LeadRef(id=people[0].id)))
check(
    member.account_id == got.id and member.matched_by == "email_domain" and member.persona == "decision_maker",
    "GetLead shows the lead's account and persona",
)
x = accounts.ExplainAccount(acc.ExplainAccountRequest(account=acc.AccountRef(id=got.id)))
check(len(x.members) == 2 and all(m.engaged for m in x.members), "ExplainAccount lists each engaged member")
check(
    x.next_stage == acc.ACCOUNT_STAGE_OPPORTUNITY and list(x.or_by) == ["ACCEPT"],
    "past MQA the next step is a member's SQL, or ACCEPT",
)
moved = accounts.TransitionAccount(
    acc.TransitionAccountRequest(account=acc.AccountRef(id=got.id), command=acc.ACCOUNT_COMMAND_ACCEPT)
)
check(moved.account.stage == acc.ACCOUNT_STAGE_OPPORTUNITY, "TransitionAccount ACCEPT opens it")
try:
    accounts.TransitionAccount(
        acc.TransitionAccountRequest(
            account=acc.AccountRef(id=got.id), command=acc.ACCOUNT_COMMAND_RECYCLE, reason="went_dark"
        )
    )
    check(False, "a lead's reason is refused for an account")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"a lead's reason is INVALID_ARGUMENT for an account ({e.details()})")
stream = triggers.Subscribe(
    ts.SubscribeRequest(
        consumer="python-accounts",
        start=ts.START_POSITION_EARLIEST,
        filter=ts.EventFilter(kinds=[ts.EVENT_KIND_ACCOUNT_TRANSITION], account_stages=[acc.ACCOUNT_STAGE_MQA]),
    ),
    timeout=10,
)
first = next(iter(stream))
check(
    first.event.account.id == got.id and first.event.account_transition.to == acc.ACCOUNT_STAGE_MQA,
    "Subscribe streams the account's move to MQA",
)
stream.cancel()

# Identity: a visitor's activity under an anonymous id, kept until a form
# makes it a lead, then joined to the lead by IdentifyLead.
visitor = f"cookie-{uuid.uuid4().hex[:8]}"
for i in range(5):
    kept = leads.RecordEngagement(
        lead_service_pb2.RecordEngagementRequest(
            lead=lead_pb2.LeadRef(anonymous_id=visitor),
            engagement=lead_pb2.Engagement(event_id=f"{visitor}-{i}", type="webinar_attended"),
        )
    )
    check(kept.anonymous and not kept.HasField("lead"), f"RecordEngagement keeps visit {i} as anonymous activity")
try:
    leads.GetLead(lead_service_pb2.GetLeadRequest(lead=lead_pb2.LeadRef(anonymous_id=visitor)))
    check(False, "an anonymous id names no lead before its identification")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.NOT_FOUND, "GetLead by an unidentified anonymous id is NOT_FOUND")
form = leads.CreateLead(
    lead_service_pb2.CreateLeadRequest(
        profile={"email": f"py-{uuid.uuid4().hex[:8]}@initech.com", "company": "Initech", "title": "CTO", "company_size": "500"}
    )
).lead
identified = leads.IdentifyLead(
    lead_service_pb2.IdentifyLeadRequest(lead=lead_pb2.LeadRef(id=form.id), anonymous_id=visitor, request_id=str(uuid.uuid4()))
)
check(identified.joined == 5, f"IdentifyLead joins the five webinars ({identified.joined})")
check(
    [(t.to_stage, t.cause) for t in identified.transitions] == [(lead_pb2.STAGE_MQL, lead_pb2.CAUSE_IDENTIFY)],
    "the joined activity makes the lead an MQL at its identification",
)
same = leads.GetLead(lead_service_pb2.GetLeadRequest(lead=lead_pb2.LeadRef(anonymous_id=visitor))).lead
check(same.id == form.id, "the anonymous id now names the lead")

# Merges: the lead above and a duplicate the CRM created, merged; the
# duplicate's key names the survivor; the merge undone.
crm_key = f"crm-{uuid.uuid4().hex[:8]}"
crm = leads.CreateLead(
    lead_service_pb2.CreateLeadRequest(
        external_key=crm_key,
        profile={"email": f"py-crm-{uuid.uuid4().hex[:8]}@initech.com", "company": "Initech", "phone": "+1 555 0100"},
    )
).lead
merged = leads.MergeLeads(
    lead_service_pb2.MergeLeadsRequest(
        request_id=str(uuid.uuid4()),
        survivor=lead_pb2.LeadRef(id=form.id),
        duplicate=lead_pb2.LeadRef(external_key=crm_key),
    )
)
check(merged.duplicate_id == crm.id and merged.survivor.id == form.id, "MergeLeads keeps the survivor")
check("phone" in merged.attributes_taken, "the survivor takes the attribute it lacked")
try:
    leads.GetLead(lead_service_pb2.GetLeadRequest(lead=lead_pb2.LeadRef(id=crm.id)))
    check(False, "a merged lead is not found by its id")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.NOT_FOUND, "GetLead by a merged lead's id is NOT_FOUND (MERGED_INTO)")
by_key = leads.GetLead(lead_service_pb2.GetLeadRequest(lead=lead_pb2.LeadRef(external_key=crm_key))).lead
check(by_key.id == form.id, "the duplicate's key names the survivor")
unmerged = leads.UnmergeLead(lead_service_pb2.UnmergeLeadRequest(request_id=str(uuid.uuid4()), duplicate_id=crm.id))
check(
    unmerged.duplicate.id == crm.id and unmerged.duplicate.stage == lead_pb2.STAGE_IQL,
    "UnmergeLead gives the duplicate back its stage",
)
check("phone" not in unmerged.survivor.profile, "the survivor gives the attribute back")

# Duplicates: two leads of one person's email, written differently.
mail = uuid.uuid4().hex[:8]
first = leads.CreateLead(lead_service_pb2.CreateLeadRequest(profile={"email": f"dee-{mail}@initech.com"})).lead
second = leads.CreateLead(lead_service_pb2.CreateLeadRequest(profile={"email": f"Dee-{mail}+news@Initech.com"})).lead
found = leads.FindDuplicates(lead_service_pb2.FindDuplicatesRequest(lead=lead_pb2.LeadRef(id=first.id))).candidates
check(
    [(c.lead.id, list(c.matched)) for c in found] == [(second.id, ["email"])],
    "FindDuplicates finds the lead of the same normalised email",
)

# Owners: a sales rep of a team, created and read back.
from leadflow.v1 import owner_service_pb2 as own, owner_service_pb2_grpc  # noqa: E402

owners = owner_service_pb2_grpc.OwnerServiceStub(channel)
rep_id = f"rep-{uuid.uuid4().hex[:8]}"
created = owners.CreateOwner(
    own.CreateOwnerRequest(
        request_id=str(uuid.uuid4()),
        owner=own.Owner(id=rep_id, display_name="Ana", teams=["emea"], capacity=5, weight=2, available=True),
    )
).owner
check(created.id == rep_id and created.version == 1 and created.capacity == 5, "CreateOwner keeps the owner")
listed = owners.ListOwners(own.ListOwnersRequest(team="emea")).owners
check(rep_id in [o.id for o in listed], "ListOwners lists the team's owner")

# Routing: a route hands SQLs to the team round robin; a sales-routing
# engine consumes LEAD_ASSIGNED from the stream and learns whom to notify.
team = f"team-{uuid.uuid4().hex[:8]}"
reps = [f"{team}-ana", f"{team}-ben"]
for rep in reps:
    owners.CreateOwner(own.CreateOwnerRequest(owner=own.Owner(id=rep, display_name=rep, teams=[team], weight=1, available=True)))
routed = source + f"""
[[route]]
id = "sql-to-{team}"
on = "entered:SQL"
team = "{team}"
strategy = "round_robin"
"""
version = policies.CreatePolicyVersion(policy_service_pb2.CreatePolicyVersionRequest(source=routed)).policy.version
policies.ActivatePolicy(policy_service_pb2.ActivatePolicyRequest(version=version))
engine = triggers.Subscribe(
    ts.SubscribeRequest(
        consumer=f"sales-router-{team}",
        start=ts.START_POSITION_LATEST,
        filter=ts.EventFilter(kinds=[ts.EVENT_KIND_LEAD_ASSIGNED]),
    ),
    timeout=20,
)
buyers = []
for i in range(4):
    buyer = leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(profile={"email": f"buyer{i}-{team}@globex.com", "company": "Globex"})
    ).lead
    leads.RecordEngagement(
        lead_service_pb2.RecordEngagementRequest(
            lead=lead_pb2.LeadRef(id=buyer.id),
            engagement=lead_pb2.Engagement(event_id=f"demo-{buyer.id}", type="demo_requested", occurred_at=now),
        )
    )
    buyers.append(buyer.id)
notified = {}
for item in engine:
    if not item.HasField("event"):
        continue
    e = item.event
    check(e.kind == ts.EVENT_KIND_LEAD_ASSIGNED and e.HasField("assignment"), "the engine gets a LEAD_ASSIGNED")
    check(e.assignment.route_id == f"sql-to-{team}", f"it names the route ({e.assignment.explanation})")
    notified[e.lead.id] = e.assignment.to_owner
    triggers.Ack(ts.AckRequest(consumer=f"sales-router-{team}", sequence=e.sequence))
    if len(notified) == len(buyers):
        break
engine.cancel()
check(sorted(notified) == sorted(buyers), "every SQL was handed to an owner")
check([notified[b] for b in buyers] == [reps[0], reps[1], reps[0], reps[1]], "round robin, in turn")
check(
    leads.GetLead(lead_service_pb2.GetLeadRequest(lead=lead_pb2.LeadRef(id=buyers[0]))).lead.owner_id == reps[0],
    "GetLead shows the owner",
)
