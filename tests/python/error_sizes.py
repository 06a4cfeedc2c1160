"""A stock grpcio client reads every leadflow error, whatever the input.

Usage: error_sizes.py HOST:PORT GENERATED_DIR

GENERATED_DIR holds the stubs grpc_tools.protoc made from proto/. The channel
has grpcio's default options, so its default metadata limits (8 KiB soft,
16 KiB hard): past them the client reports its own RESOURCE_EXHAUSTED
("received metadata size exceeds ...") and the server's answer is lost.

Every RPC that can fail with many violations or echo a large value gets
hostile input. For each case this checks the code, that
grpc-status-details-bin decodes as a google.rpc.Status carrying ErrorInfo
(and BadRequest where fields are named) that agrees with the status, and
that the trailers stay under 7 KiB. ValidatePolicy answers in the body: its
answer must be bounded and count every problem. One JSON line per case goes
to stdout; the exit status is 1 if any case failed.
"""

import base64
import json
import sys
import uuid

target, generated = sys.argv[1], sys.argv[2]
sys.path.insert(0, generated)

import grpc  # noqa: E402
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2  # noqa: E402

from leadflow.v1 import analytics_service_pb2 as an, analytics_service_pb2_grpc  # noqa: E402
from leadflow.v1 import lead_pb2, lead_service_pb2 as ls, lead_service_pb2_grpc  # noqa: E402
from leadflow.v1 import policy_service_pb2 as ps, policy_service_pb2_grpc  # noqa: E402
from leadflow.v1 import trigger_service_pb2 as ts, trigger_service_pb2_grpc  # noqa: E402

# Under the 8 KiB a stock client accepts, with room for the headers a proxy adds.
MAX_TRAILERS = 7 * 1024
# What the server promises for grpc-message, before percent-encoding.
MAX_MESSAGE = 512
# Field violations listed at most, then one "…and K more".
MAX_LISTED = 20
# Problems a ValidatePolicy answer lists at most. Each path and message is
# cut to 400 characters: a full list of ASCII problems is about 80 KB.
MAX_PROBLEMS = 100
MAX_VALIDATE_BYTES = 96 * 1024


# ---- google.rpc, from the protobuf runtime alone ---------------------------------
# The standard error model (google/rpc/status.proto, error_details.proto),
# declared in a private pool so that it needs no package beyond the protobuf
# runtime grpc_tools brings, and cannot clash with googleapis-common-protos.


def _rpc_messages():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FieldDescriptorProto
    string, int32, message = f.TYPE_STRING, f.TYPE_INT32, f.TYPE_MESSAGE
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="leadflow_check/google_rpc.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )

    def declare(parent, name, *fields):
        m = parent.add(name=name)
        for number, (field, kind, label, type_name) in enumerate(fields, start=1):
            m.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                m.field[-1].type_name = type_name
        return m

    declare(file.message_type, "Status", ("code", int32, optional, ""), ("message", string, optional, ""),
            ("details", message, repeated, ".google.protobuf.Any"))
    bad_request = declare(file.message_type, "BadRequest",
                          ("field_violations", message, repeated, ".google.rpc.BadRequest.FieldViolation"))
    declare(bad_request.nested_type, "FieldViolation", ("field", string, optional, ""),
            ("description", string, optional, ""))
    info = declare(file.message_type, "ErrorInfo", ("reason", string, optional, ""), ("domain", string, optional, ""),
                   ("metadata", message, repeated, ".google.rpc.ErrorInfo.MetadataEntry"))
    entry = declare(info.nested_type, "MetadataEntry", ("key", string, optional, ""), ("value", string, optional, ""))
    entry.options.map_entry = True
    precondition = declare(file.message_type, "PreconditionFailure",
                           ("violations", message, repeated, ".google.rpc.PreconditionFailure.Violation"))
    declare(precondition.nested_type, "Violation", ("type", string, optional, ""), ("subject", string, optional, ""),
            ("description", string, optional, ""))
    declare(file.message_type, "ResourceInfo", ("resource_type", string, optional, ""),
            ("resource_name", string, optional, ""), ("owner", string, optional, ""),
            ("description", string, optional, ""))
    declare(file.message_type, "RetryInfo", ("retry_delay", message, optional, ".google.protobuf.Duration"))
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"google.rpc.{name}"))
        for name in ("Status", "BadRequest", "ErrorInfo", "PreconditionFailure", "ResourceInfo", "RetryInfo")
    }


RPC = _rpc_messages()


# ---- measuring --------------------------------------------------------------------


def percent_encoded(message):
    """grpc-message as sent: bytes outside printable ASCII, and '%', as %XX."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in message.encode())


def header_size(key, wire_value):
    """A header as HTTP/2 (HPACK) and gRPC's metadata limits count it."""
    return len(key) + len(wire_value) + 32


def trailer_size(error):
    """The trailers of a failed call, as sent: grpc-status, grpc-message and
    every other header the client saw; binary values in base64."""
    size = header_size("grpc-status", str(error.code().value[0]))
    size += header_size("grpc-message", percent_encoded(error.details() or ""))
    for key, value in error.trailing_metadata() or ():
        wire = base64.b64encode(value) if key.endswith("-bin") else value.encode()
        size += header_size(key, wire)
    return size


# ---- cases --------------------------------------------------------------------------

results = []


def report(result):
    results.append(result)
    print(json.dumps(result, ensure_ascii=False), flush=True)


def expect(name, rpc, call, code, reason=None, violations=None, fields=(), metadata=None):
    """Runs `call`, which must fail with `code`, and checks what came back.

    `violations`: the number of field violations the error counts (an int),
    or at least that many (a tuple `(n,)`). `fields`: paths that must be
    listed. `metadata`: ErrorInfo metadata that must be present.
    """
    result = {"case": name, "rpc": rpc, "expected": code.name}
    failures = []
    try:
        call()
        failures.append("the request was accepted")
        result["failures"] = failures
        return report(result)
    except grpc.RpcError as error:
        status = error
    details = status.details() or ""
    result.update(code=status.code().name, trailers=trailer_size(status), message=len(details.encode()))
    if status.code() != code:
        if status.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "metadata" in details:
            failures.append(f"the client refused the trailers: {details}")
        else:
            failures.append(f"{status.code().name}, not {code.name}: {details[:300]}")
    if result["trailers"] >= MAX_TRAILERS:
        failures.append(f"trailers of {result['trailers']} bytes; at most {MAX_TRAILERS - 1}")
    if result["message"] > MAX_MESSAGE:
        failures.append(f"grpc-message of {result['message']} bytes; at most {MAX_MESSAGE}")
    raw = dict(status.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        failures.append("no grpc-status-details-bin")
        result["failures"] = failures
        return report(result)
    result["details"] = len(raw)
    rich = RPC["Status"].FromString(raw)
    if rich.code != status.code().value[0] or rich.message != details:
        failures.append(f"google.rpc.Status says {rich.code} {rich.message[:200]!r}, the status {details[:200]!r}")
    found = {}
    for detail in rich.details:
        kind = detail.type_url.rsplit("/", 1)[-1]
        if kind.startswith("google.rpc.") and kind[len("google.rpc."):] in RPC:
            found[kind[len("google.rpc."):]] = RPC[kind[len("google.rpc."):]].FromString(detail.value)
    info = found.get("ErrorInfo")
    if info is None or info.domain != "leadflow":
        failures.append(f"no leadflow ErrorInfo among {sorted(found)}")
    else:
        result["reason"] = info.reason
        if reason is not None and info.reason != reason:
            failures.append(f"reason {info.reason}, not {reason}")
        for key, value in (metadata or {}).items():
            if info.metadata.get(key) != value:
                failures.append(f"ErrorInfo metadata {key}={info.metadata.get(key)!r}, not {value!r}")
    listed = list(found["BadRequest"].field_violations) if "BadRequest" in found else []
    result["listed"] = len(listed)
    if len(listed) > MAX_LISTED + 1:
        failures.append(f"{len(listed)} field violations listed; at most {MAX_LISTED} and a count")
    more = 0
    if listed and listed[-1].description.startswith("…and "):
        more = int(listed[-1].description.split()[1])
        listed = listed[:-1]
    total = int(info.metadata.get("violations", "0")) if info else 0
    result["violations"] = total
    if listed and total != len(listed) + more:
        failures.append(f"{len(listed)} listed and {more} more, but ErrorInfo counts {total}")
    if isinstance(violations, int) and total != violations:
        failures.append(f"{total} violations counted, not {violations}")
    if isinstance(violations, tuple) and total < violations[0]:
        failures.append(f"{total} violations counted, not at least {violations[0]}")
    paths = [v.field for v in listed]
    for field in fields:
        if field not in paths:
            failures.append(f"no violation at {field!r} among {paths[:5]}…")
    if failures:
        result["failures"] = failures
    return report(result)


def expect_problems(name, source, at_least):
    """ValidatePolicy answers a bad document in its body: bounded, counted."""
    result = {"case": name, "rpc": "PolicyService.ValidatePolicy", "expected": "OK"}
    failures = []
    try:
        answer = policies.ValidatePolicy(ps.ValidatePolicyRequest(source=source))
    except grpc.RpcError as error:
        result.update(code=error.code().name, failures=[f"refused: {(error.details() or '')[:300]}"])
        return report(result)
    result.update(code="OK", response=answer.ByteSize(), problems=len(answer.problems), total=answer.problems_total)
    if answer.valid:
        failures.append("a bad document is valid")
    if len(answer.problems) > MAX_PROBLEMS:
        failures.append(f"{len(answer.problems)} problems listed; at most {MAX_PROBLEMS}")
    if answer.problems_total < max(at_least, len(answer.problems)):
        failures.append(f"problems_total {answer.problems_total}, expected at least {at_least}")
    if answer.ByteSize() > MAX_VALIDATE_BYTES:
        failures.append(f"an answer of {answer.ByteSize()} bytes; at most {MAX_VALIDATE_BYTES}")
    if failures:
        result["failures"] = failures
    return report(result)


channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=30)
leads = lead_service_pb2_grpc.LeadServiceStub(channel)
policies = policy_service_pb2_grpc.PolicyServiceStub(channel)
triggers = trigger_service_pb2_grpc.TriggerServiceStub(channel)
analytics = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
run = uuid.uuid4().hex[:8]


def ref(id=None, key=None):
    return lead_pb2.LeadRef(id=id) if id is not None else lead_pb2.LeadRef(external_key=key)


def fresh_lead(name):
    profile = {"email": f"{name}-{run}@acme.com", "company": "Acme"}
    return leads.CreateLead(ls.CreateLeadRequest(external_key=f"{name}-{run}", profile=profile)).lead


def event(kind="page_viewed", **fields):
    return lead_pb2.Engagement(event_id=fields.pop("event_id", uuid.uuid4().hex), type=kind, **fields)


lead = fresh_lead("target")
unknown_id = "u" * 128  # the longest id there is, and no lead has it
huge = "k" * 20_000

# ---- LeadService.CreateLead
create = "LeadService.CreateLead"
expect("a 20,000-character profile key", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(profile={"email": f"a-{run}@acme.com", huge: "v"})),
       INVALID, reason="LIMIT_EXCEEDED", violations=1)
expect("65 attributes", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(profile={f"a{i}": "v" for i in range(64)} | {"email": "a@b.c"})),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["profile"])
expect("10,000 attributes", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(profile={f"attribute-{i}": "v" * 20 for i in range(10_000)})),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["profile"])
expect("64 attributes, each name and value too long", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(
           profile={f"{i:02}" + "n" * 2_000: "v" * 30_000 for i in range(64)})),
       INVALID, reason="LIMIT_EXCEEDED", violations=128)
expect("64 values with control characters", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(
           profile={f"a{i}": "\u0007" * 2_000 for i in range(63)} | {"email": "a@b.c"})),
       INVALID, reason="INVALID_FIELD", violations=63)
expect("a 1,000,000-character value", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(profile={"email": "a@b.c", "notes": "x" * 1_000_000})),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=['profile["notes"]'])
expect("a 2,048-character address that is no email (echoed)", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(profile={"email": "e" * 2_048})),
       INVALID, fields=["profile.email"])
expect("a huge external key and request id", create,
       lambda: leads.CreateLead(ls.CreateLeadRequest(request_id=huge, external_key=huge, profile={"email": "a@b.c"})),
       INVALID, reason="LIMIT_EXCEEDED", violations=2, fields=["request_id", "external_key"])
expect("an external key taken, at the longest (echoed)", create,
       lambda: [leads.CreateLead(ls.CreateLeadRequest(external_key="t" * 128, profile={"email": f"t{n}-{run}@acme.com"}))
                for n in range(2)],
       grpc.StatusCode.ALREADY_EXISTS, reason="ALREADY_EXISTS")

# ---- LeadService.UpdateLeadProfile
update = "LeadService.UpdateLeadProfile"
expect("64 bad attributes", update,
       lambda: leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(
           lead=ref(lead.id), attributes={"n" * 1_000 + str(i): "\u0000" * 20_000 for i in range(64)})),
       INVALID, reason="LIMIT_EXCEEDED", violations=128)
expect("65 attributes", update,
       lambda: leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(
           lead=ref(lead.id), attributes={f"a{i}": "v" for i in range(65)})),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["attributes"])
expect("a merge past 64 attributes", update,
       lambda: leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(
           lead=ref(lead.id), attributes={f"a{i}": "v" for i in range(64)})),
       INVALID, reason="LIMIT_EXCEEDED")
expect("a merge past 64 KiB", update,
       lambda: [leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(
           lead=ref(lead.id), attributes={f"{half}{i}": "v" * 2_000 for i in range(20)})) for half in "bc"],
       INVALID, reason="LIMIT_EXCEEDED")
expect("an email that is none (echoed)", update,
       lambda: leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(lead=ref(lead.id), attributes={"email": "e" * 2_048})),
       INVALID, fields=["attributes.email"])
expect("a huge lead id and request id", update,
       lambda: leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(
           request_id=huge, lead=ref(huge), attributes={huge: huge})),
       INVALID, reason="LIMIT_EXCEEDED", violations=(3,))
expect("an unknown lead at the longest key (echoed)", update,
       lambda: leads.UpdateLeadProfile(ls.UpdateLeadProfileRequest(lead=ref(key=unknown_id), attributes={"a": "b"})),
       NOT_FOUND, reason="NOT_FOUND")

# ---- LeadService.RecordEngagement
record = "LeadService.RecordEngagement"
expect("a 20,000-character event id", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(lead.id), engagement=event(event_id=huge))),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["engagement.event_id"])
expect("a 20,000-character type", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(lead.id), engagement=event(huge))),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["engagement.type"])
expect("an unknown type at the longest (echoed)", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(lead.id), engagement=event("t" * 128))),
       INVALID, reason="UNKNOWN_ENGAGEMENT_TYPE", fields=["engagement.type"])
expect("64 properties with huge names and values", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(lead.id), engagement=event(
           properties={f"{i:02}" + "p" * 10_000: "v" * 50_000 for i in range(64)}))),
       INVALID, reason="LIMIT_EXCEEDED", violations=128)
expect("65 properties", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(lead.id), engagement=event(
           properties={f"p{i}": "v" for i in range(65)}))),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["engagement.properties"])
expect("every field too long", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(huge), engagement=event(
           huge, event_id=huge, channel=huge, properties={huge: huge}))),
       INVALID, reason="LIMIT_EXCEEDED", violations=6)
expect("an unknown lead at the longest id (echoed)", record,
       lambda: leads.RecordEngagement(ls.RecordEngagementRequest(lead=ref(unknown_id), engagement=event())),
       NOT_FOUND, reason="NOT_FOUND")

# ---- LeadService.RecordEngagements
batch = "LeadService.RecordEngagements"


def items(n, make):
    return ls.RecordEngagementsRequest(engagements=[make(i) for i in range(n)])


expect("500 items without event_id", batch,
       lambda: leads.RecordEngagements(items(500, lambda i: ls.EngagementItem(
           lead=ref(lead.id), engagement=event(event_id="")))),
       INVALID, reason="INVALID_FIELD", violations=500, fields=["engagements[0].engagement.event_id"])
expect("500 items each with an unknown type at the longest (echoed)", batch,
       lambda: leads.RecordEngagements(items(500, lambda i: ls.EngagementItem(
           lead=ref(lead.id), engagement=event(f"{i:03}" + "t" * 125)))),
       INVALID, reason="UNKNOWN_ENGAGEMENT_TYPE", violations=500)
expect("500 items each with a 5,000-character type", batch,
       lambda: leads.RecordEngagements(items(500, lambda i: ls.EngagementItem(
           lead=ref(lead.id), engagement=event(f"{i:03}" + "t" * 5_000)))),
       INVALID, reason="LIMIT_EXCEEDED", violations=500)
expect("500 unknown leads at the longest id (echoed)", batch,
       lambda: leads.RecordEngagements(items(500, lambda i: ls.EngagementItem(
           lead=ref(f"{i:03}" + "u" * 125), engagement=event()))),
       NOT_FOUND, reason="NOT_FOUND", violations=500)


def mixed(i):
    match i % 5:
        case 0:
            return ls.EngagementItem(lead=ref(lead.id), engagement=event(event_id=""))
        case 1:
            return ls.EngagementItem(lead=ref(key=f"{i:03}" + "k" * 125), engagement=event())
        case 2:
            return ls.EngagementItem(lead=ref(lead.id), engagement=event(f"{i:03}" + "t" * 125))
        case 3:
            return ls.EngagementItem(lead=ref(lead.id), engagement=event(properties={"p" * 5_000: "v"}))
        case _:
            return ls.EngagementItem(lead=ref(lead.id), engagement=event())


expect("a mix of 400 bad items and 100 good ones", batch,
       lambda: leads.RecordEngagements(items(500, mixed)), INVALID, reason="INVALID_FIELD", violations=400)
expect("the first refused item an unknown lead, then 499 bad ones", batch,
       lambda: leads.RecordEngagements(items(500, lambda i: mixed(i + 1))), NOT_FOUND, reason="NOT_FOUND",
       violations=400)
expect("501 items", batch,
       lambda: leads.RecordEngagements(items(501, lambda i: ls.EngagementItem(lead=ref(lead.id), engagement=event()))),
       EXHAUSTED, reason="LIMIT_EXCEEDED", violations=1, fields=["engagements"],
       metadata={"limit": "500", "actual": "501"})
expect("a message over 4 MiB", batch,
       lambda: leads.RecordEngagements(items(100, lambda i: ls.EngagementItem(
           lead=ref(lead.id), engagement=event(properties={f"p{j}": "v" * 2_000 for j in range(25)})))),
       EXHAUSTED, reason="LIMIT_EXCEEDED", violations=1, fields=["(message)"])

# ---- LeadService.StreamEngagements
stream = "LeadService.StreamEngagements"


def streamed(bad):
    good = [ls.StreamEngagementsRequest(lead=ref(lead.id), engagement=event()) for _ in range(5)]
    return leads.StreamEngagements(iter(good + [bad]), timeout=60)


expect("64 bad properties after 5 good items", stream,
       lambda: streamed(ls.StreamEngagementsRequest(lead=ref(lead.id), engagement=event(
           properties={f"{i:02}" + "p" * 10_000: "\u0001" * 10_000 for i in range(64)}))),
       INVALID, reason="LIMIT_EXCEEDED", violations=128, metadata={"committed": "5"})
expect("64 properties with control characters after 5 good items", stream,
       lambda: streamed(ls.StreamEngagementsRequest(lead=ref(lead.id), engagement=event(
           properties={f"{i:02}" + "p" * 100: "\u0007" for i in range(64)}))),
       INVALID, reason="INVALID_FIELD", violations=64, metadata={"committed": "5"})
expect("an unknown type at the longest after 5 good items (echoed)", stream,
       lambda: streamed(ls.StreamEngagementsRequest(lead=ref(lead.id), engagement=event("t" * 128))),
       INVALID, reason="UNKNOWN_ENGAGEMENT_TYPE", metadata={"committed": "5"})
expect("an unknown lead at the longest after 5 good items (echoed)", stream,
       lambda: streamed(ls.StreamEngagementsRequest(lead=ref(key=unknown_id), engagement=event())),
       NOT_FOUND, reason="NOT_FOUND", metadata={"committed": "5"})

# ---- LeadService.Transition
move = "LeadService.Transition"
expect("a 1,000,000-character reason", move,
       lambda: leads.Transition(ls.TransitionRequest(
           lead=ref(lead.id), action=ls.ACTION_DISQUALIFY, reason="r" * 1_000_000)),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["reason"])
expect("an unknown reason at the longest (echoed)", move,
       lambda: leads.Transition(ls.TransitionRequest(lead=ref(lead.id), action=ls.ACTION_DISQUALIFY, reason="r" * 1_024)),
       INVALID, reason="UNKNOWN_REASON", fields=["reason"])
expect("a 100,000-character currency", move,
       lambda: leads.Transition(ls.TransitionRequest(
           lead=ref(lead.id), action=ls.ACTION_CONVERT, deal_value=10, currency="E" * 100_000)),
       INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["currency"])
expect("a currency that is no ISO 4217 code", move,
       lambda: leads.Transition(ls.TransitionRequest(
           lead=ref(lead.id), action=ls.ACTION_CONVERT, deal_value=10, currency="e\u00e9")),
       INVALID, fields=["currency"])
expect("every field bad", move,
       lambda: leads.Transition(ls.TransitionRequest(
           request_id=huge, lead=ref(huge), action=99, reason=huge * 50, actor=huge * 50, currency=huge)),
       INVALID, reason="LIMIT_EXCEEDED", violations=(6,))
expect("an unknown lead at the longest (echoed)", move,
       lambda: leads.Transition(ls.TransitionRequest(lead=ref(key=unknown_id), action=ls.ACTION_PROMOTE, reason="x")),
       NOT_FOUND, reason="NOT_FOUND")

# ---- LeadService reads
for rpc, call in (
    ("LeadService.GetLead", lambda r: leads.GetLead(ls.GetLeadRequest(lead=r))),
    ("LeadService.GetLeadHistory", lambda r: leads.GetLeadHistory(ls.GetLeadHistoryRequest(lead=r))),
    ("LeadService.ExplainScore", lambda r: leads.ExplainScore(ls.ExplainScoreRequest(lead=r))),
    ("LeadService.EraseLead", lambda r: leads.EraseLead(ls.EraseLeadRequest(lead=r))),
):
    expect("a 1,000,000-character id", rpc, lambda: call(ref("i" * 1_000_000)),
           INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["lead.id"])
    expect("a 1,000,000-character external key", rpc, lambda: call(ref(key="k" * 1_000_000)),
           INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["lead.external_key"])
    expect("an unknown external key at the longest (echoed)", rpc, lambda: call(ref(key=unknown_id)),
           NOT_FOUND, reason="NOT_FOUND")
garbage = "%" * 1_000_000
expect("a 1,000,000-character page token", "LeadService.ListLeads",
       lambda: leads.ListLeads(ls.ListLeadsRequest(page_token=garbage)),
       INVALID, violations=1, fields=["page_token"])
expect("a page token, a page size and a stage all bad", "LeadService.ListLeads",
       lambda: leads.ListLeads(ls.ListLeadsRequest(page_token=garbage, page_size=-1, stage=99)),
       INVALID, violations=3, fields=["page_token", "page_size", "stage"])
expect("a 1,000,000-character page token", "LeadService.GetLeadHistory",
       lambda: leads.GetLeadHistory(ls.GetLeadHistoryRequest(lead=ref(lead.id), page_token=garbage)),
       INVALID, violations=1, fields=["page_token"])
expect("a huge key and a huge page token", "LeadService.GetLeadHistory",
       lambda: leads.GetLeadHistory(ls.GetLeadHistoryRequest(lead=ref(huge), page_size=-5, page_token=garbage)),
       INVALID, violations=3, fields=["lead.id", "page_size", "page_token"])

# ---- PolicyService
source = policies.GetActivePolicy(ps.GetActivePolicyRequest()).policy.source
bad_rules = 'name = "bad-rules"\n' + "".join(
    f'[[engagement]]\nid = "r{i}"\ntype = "no_such_type_{i}"\npoints = 1\n' for i in range(3_000))
one_line = 'name = "one-line" ' + "x" * 200_000
too_big = source + "\n# " + "x" * (256 * 1024)
for rpc, call in (
    ("PolicyService.CreatePolicyVersion", lambda s: policies.CreatePolicyVersion(ps.CreatePolicyVersionRequest(source=s))),
    ("PolicyService.SimulatePolicy", lambda s: policies.SimulatePolicy(ps.SimulatePolicyRequest(source=s))),
):
    expect("3,000 bad rules", rpc, lambda: call(bad_rules), INVALID, reason="INVALID_POLICY", violations=(3_000,))
    expect("a 200 KB one-line bad TOML", rpc, lambda: call(one_line), INVALID, reason="INVALID_POLICY")
    expect("a document over 256 KiB", rpc, lambda: call(too_big), EXHAUSTED, reason="LIMIT_EXCEEDED",
           violations=1, fields=["source"])
expect_problems("3,000 bad rules", bad_rules, 3_000)
expect_problems("a 200 KB one-line bad TOML", one_line, 1)
expect("a document over 256 KiB", "PolicyService.ValidatePolicy",
       lambda: policies.ValidatePolicy(ps.ValidatePolicyRequest(source=too_big)),
       EXHAUSTED, reason="LIMIT_EXCEEDED", violations=1, fields=["source"])
expect("a bad version, page size and page token", "PolicyService.SimulatePolicy",
       lambda: policies.SimulatePolicy(ps.SimulatePolicyRequest(version=-1, page_size=-1, page_token=garbage)),
       INVALID, violations=3, fields=["version", "page_size", "page_token"])
expect("a 1,000,000-character page token", "PolicyService.ListPolicyVersions",
       lambda: policies.ListPolicyVersions(ps.ListPolicyVersionsRequest(page_token=garbage, page_size=-1)),
       INVALID, violations=2, fields=["page_token", "page_size"])
expect("a huge request id", "PolicyService.ActivatePolicy",
       lambda: policies.ActivatePolicy(ps.ActivatePolicyRequest(request_id=huge, version=-1)),
       INVALID, violations=2, fields=["request_id", "version"])

# ---- TriggerService
subscribe = "TriggerService.Subscribe"


def first_item(request):
    return next(iter(triggers.Subscribe(request, timeout=30)))


expect("a filter with many bad entries", subscribe,
       lambda: first_item(ts.SubscribeRequest(consumer=f"c-{run}", filter=ts.EventFilter(
           kinds=[99] * 3_000, stages=[77] * 3_000, workflows=["w" * 10_000] * 200))),
       INVALID, reason="INVALID_FIELD", violations=6_201, fields=["filter", "filter.kinds[0]"])
expect("a huge consumer and everything else bad", subscribe,
       lambda: first_item(ts.SubscribeRequest(consumer=huge, start=42, at_sequence=7, filter=ts.EventFilter(
           workflows=[huge] * 64))),
       INVALID, reason="LIMIT_EXCEEDED", violations=(67,))
expect("an unknown consumer at the longest, resumed (echoed)", subscribe,
       lambda: first_item(ts.SubscribeRequest(consumer="c" * 128, start=ts.START_POSITION_RESUME)),
       NOT_FOUND)
for rpc, call in (
    ("TriggerService.Ack", lambda c: triggers.Ack(ts.AckRequest(consumer=c, sequence=1))),
    ("TriggerService.DeleteConsumer", lambda c: triggers.DeleteConsumer(ts.DeleteConsumerRequest(consumer=c))),
):
    expect("a 1,000,000-character consumer", rpc, lambda: call("c" * 1_000_000),
           INVALID, reason="LIMIT_EXCEEDED", violations=1, fields=["consumer"])
    expect("an unknown consumer at the longest (echoed)", rpc, lambda: call("c" * 128), NOT_FOUND)

# ---- AnalyticsService
expect("a huge channel, a bad grouping and a huge page token", "AnalyticsService.GetFunnel",
       lambda: analytics.GetFunnel(an.GetFunnelRequest(source_channel=huge, group_by=9, page_token=garbage)),
       INVALID, violations=(3,), fields=["source_channel", "group_by", "page_token"])
def period(start, end):
    return an.Period(start=timestamp_pb2.Timestamp(seconds=start), end=timestamp_pb2.Timestamp(seconds=end))


expect("a reversed period, a bad outcome and precision, a huge model", "AnalyticsService.LearnPolicy",
       lambda: list(analytics.LearnPolicy(an.LearnPolicyRequest(
           period=period(2_000_000, 1_000_000), outcome=9, target_precision=2.0, model=huge))),
       INVALID, violations=(4,), fields=["period.end", "outcome", "target_precision", "model"])
expect("an empty period: too little data, after the job's progress", "AnalyticsService.LearnPolicy",
       lambda: list(analytics.LearnPolicy(an.LearnPolicyRequest(
           period=period(946_684_800, 978_307_200), outcome=an.LEARN_OUTCOME_SQL, choose_fit=True))),
       PRECONDITION, reason="TOO_LITTLE_DATA", metadata={"outcomes": "0", "positives": "0", "min_outcomes": "200"})
expect("a negative job id", "AnalyticsService.GetLearnReport",
       lambda: analytics.GetLearnReport(an.GetLearnReportRequest(job_id=-1)),
       INVALID, violations=1, fields=["job_id"])

# ---- a hostile policy: huge lists that errors might quote
# Every disqualify reason and required attribute long: a refusal that lists
# the reasons or the missing attributes would run to tens of kilobytes.
reasons = ", ".join(f'"reason-{i:04}-' + "r" * 80 + '"' for i in range(1_000))
attributes = ", ".join(f'"attribute-{i:03}-' + "a" * 80 + '"' for i in range(500))
hostile = source.replace(
    'disqualify = ["spam", "competitor", "student", "bounced", "unsubscribed", "duplicate"]',
    f"disqualify = [{reasons}]",
).replace('requires_attributes = ["email", "company"]', f'requires_attributes = ["email", "company", {attributes}]')
assert hostile != source and len(hostile.encode()) < 256 * 1024, "the default policy changed: adapt the hostile one"
version = policies.CreatePolicyVersion(ps.CreatePolicyVersionRequest(source=hostile)).policy.version
policies.ActivatePolicy(ps.ActivatePolicyRequest(version=version))
expect("an unknown reason under 1,000 long ones (listed)", move,
       lambda: leads.Transition(ls.TransitionRequest(lead=ref(lead.id), action=ls.ACTION_DISQUALIFY, reason="r" * 1_024)),
       INVALID, reason="UNKNOWN_REASON", fields=["reason"])
expect("PROMOTE missing 500 long attributes (listed)", move,
       lambda: leads.Transition(ls.TransitionRequest(lead=ref(lead.id), action=ls.ACTION_PROMOTE, reason="booth")),
       PRECONDITION, reason="GUARD_FAILED")

failed = [r for r in results if r.get("failures")]
for r in failed:
    print(f"FAIL: {r['rpc']}: {r['case']}: {'; '.join(r['failures'])}", file=sys.stderr)
sys.exit(1 if failed else 0)
