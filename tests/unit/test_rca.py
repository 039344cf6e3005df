"""Root-cause localisation on traces whose answer is known by construction.

Hand-built call chains for the rules without a baseline; the synthetic shop
(`rca_synth`) for judgements against a baseline: each fault is injected into
one service, and the localiser must name that service, not its callers or
callees, whichever way the instrumentation marks its spans.
"""

from __future__ import annotations

import copy
import itertools

import pytest

from rca_synth import Fault, window
from sre_space.rca.candidate import Candidate, confidence_words
from sre_space.rca.changepoint import change_point
from sre_space.rca.localize import localize
from sre_space.rca.stats import excess_weight, mad_sigma, median
from sre_space.rca.traces import views
from sre_space.safe_text import message_template
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.store import TraceStore

_ids = itertools.count(1)
MS = 1_000_000
LATER = 1.7e12 + 60_000  # the incident window starts a minute after the baseline


SHOP = {"frontend", "catalog", "checkout", "payments", "inventory"}


def span(
    trace: str,
    service: str,
    name: str,
    start_ms: float,
    end_ms: float,
    parent: Span | None = None,
    kind: SpanKind = SpanKind.SERVER,
    error: str | None = None,
    **attributes: object,
) -> Span:
    events = (
        [SpanEvent("exception", 0, {"exception.type": "Boom", "exception.message": error})]
        if error
        else []
    )
    return Span(
        trace_id=trace,
        span_id=f"{next(_ids):016x}",
        parent_id=parent.span_id if parent else None,
        service=service,
        name=name,
        start_ns=int(start_ms * MS),
        end_ns=int(end_ms * MS),
        kind=kind,
        error=error is not None,
        attributes=dict(attributes),
        events=events,
    )


def call_chain(trace: str, failing: str | None, slow_callee_ms: float = 0.0) -> list[Span]:
    """frontend -> checkout -> payments (client + server spans at each hop)."""
    slow = slow_callee_ms
    fe = span(
        trace,
        "frontend",
        "POST /api/checkout",
        0,
        100 + slow,
        error="upstream" if failing else None,
    )
    fe_c = span(
        trace,
        "frontend",
        "POST /checkout",
        1,
        99 + slow,
        fe,
        SpanKind.CLIENT,
        "500" if failing else None,
    )
    co = span(
        trace,
        "checkout",
        "POST /checkout",
        2,
        98 + slow,
        fe_c,
        error="upstream" if failing else None,
    )
    co_c = span(
        trace,
        "checkout",
        "POST /charge",
        3,
        97 + slow,
        co,
        SpanKind.CLIENT,
        "500" if failing else None,
    )
    pay_error = "card processor failed id 42" if failing == "payments" else None
    pay = span(trace, "payments", "POST /charge", 4, 96 + slow, co_c, error=pay_error)
    return [fe, fe_c, co, co_c, pay]


def incident(fault: Fault, *, internal: bool = False, n: int = 150) -> list[list[Span]]:
    return window(n, fault, seed=2, start_ms=LATER, internal=internal)


def baseline(*, internal: bool = False, n: int = 150) -> list[list[Span]]:
    return window(n, seed=1, internal=internal)


# --- without a baseline: static rules -------------------------------------------------


def test_propagated_errors_are_blamed_on_their_origin() -> None:
    traces = [call_chain(f"{i:032x}", failing="payments") for i in range(20)]
    traces += [call_chain(f"{i + 100:032x}", failing=None) for i in range(20)]
    top = localize(traces)[0]
    assert (top.service, top.operation) == ("payments", "POST /charge")
    assert top.fault_class == "error"
    assert top.evidence["explained_traces"] == 20
    # people read the message as it came; the signature's template masks the number
    assert top.evidence["exception"] == "Boom: card processor failed id 42"
    assert top.evidence["exception_template"] == "Boom: card processor failed id <n>"
    assert top.evidence["method"] == "static rules"


def test_unanswered_client_call_blames_the_callee() -> None:
    traces = []
    for i in range(10):
        t = f"{i:032x}"
        root = span(t, "checkout", "POST /checkout", 0, 50, error="upstream down")
        client = span(
            t,
            "checkout",
            "GET /reserve",
            1,
            40,
            root,
            SpanKind.CLIENT,
            error="Connection refused",
            **{"peer.service": "inventory"},
        )
        traces.append([root, client])
    top = localize(traces)[0]
    assert top.service == "inventory"
    assert top.fault_class == "unreachable"


def _reserve(i: int, *, answer: str | None) -> list[Span]:
    """checkout's call to inventory that failed with an HTTP 500: ``answer`` is the
    exception inventory's own span recorded, or None when that span never came."""
    t = f"{i:032x}"
    root = span(t, "checkout", "POST /checkout", 0, 50)
    client = span(
        t, "checkout", "GET /reserve", 1, 40, root, SpanKind.CLIENT,
        **{"peer.service": "inventory", "http.response.status_code": 500},
    )
    root.error = client.error = True  # a status, no message: httpx raises nothing on a 500
    if answer is None:
        return [root, client]
    return [root, client, span(t, "inventory", "GET /reserve", 2, 39, client, error=answer)]


def test_a_callee_that_answered_with_a_status_was_reached() -> None:
    # An HTTP status on the client span is the callee's answer (HTTP semantic
    # conventions set it only from a response): its own span was lost, not its
    # connection.
    top = localize([_reserve(i, answer=None) for i in range(10)])[0]
    assert (top.service, top.fault_class) == ("inventory", "error")


def test_a_process_out_of_memory_is_named_by_its_own_spans_when_most_are_lost() -> None:
    # A process past its memory limit fails its exporter's allocations too: most
    # of its spans never come, and its callers' bare 500s say nothing of why.
    traces = [_reserve(i, answer="MemoryError") for i in range(3)]
    traces += [_reserve(i, answer=None) for i in range(3, 10)]
    top = localize(traces)[0]
    assert (top.service, top.fault_class) == ("inventory", "memory")


def test_latency_is_attributed_to_the_hop_that_added_it() -> None:
    traces = [call_chain(f"{i:032x}", failing=None, slow_callee_ms=2000) for i in range(10)]
    top = localize(traces, latency_threshold_ms=800)[0]
    # All the added time sits in payments' own server span, not in the callers.
    assert top.service == "payments"
    assert top.fault_class == "latency"


def accused(found: list[Candidate]) -> list[str]:
    """The services some evidence points at (the ranking holds every service)."""
    return [c.service for c in found if c.evidence.get("explained_traces")]


def assert_nothing_stands_out(found: list[Candidate], services: set[str]) -> None:
    """Still a ranking of everyone, but no evidence and a low confidence, said in words."""
    assert {c.service for c in found} == services
    assert accused(found) == []
    assert found[0].confidence < 0.25
    assert confidence_words(found[0].confidence).startswith("low confidence")


def test_a_healthy_window_names_no_one() -> None:
    traces = [call_chain(f"{i:032x}", failing=None) for i in range(30)]
    assert_nothing_stands_out(localize(traces), {"frontend", "checkout", "payments"})


def test_message_template_masks_numbers_and_ids() -> None:
    assert (
        message_template("pool exhausted (20/20 in use, waited 250 ms) trace 5b8efff798038103")
        == "pool exhausted (<n>/<n> in use, waited <n> ms) trace <id>"
    )


# --- against a baseline ------------------------------------------------------------------


@pytest.mark.parametrize("internal", [False, True], ids=["client-server", "all-internal"])
def test_fault_free_window_against_its_baseline_has_no_candidate(internal: bool) -> None:
    found = localize(incident(Fault(), internal=internal), baseline=baseline(internal=internal))
    assert_nothing_stands_out(found, SHOP)


@pytest.mark.parametrize("internal", [False, True], ids=["client-server", "all-internal"])
def test_errors_propagated_up_the_chain_blame_where_they_originate(internal: bool) -> None:
    found = localize(
        incident(Fault(error="payments"), internal=internal), baseline=baseline(internal=internal)
    )
    top = found[0]
    assert (top.service, top.operation, top.fault_class) == ("payments", "Charge", "error")
    assert top.exception == "Declined: card declined 42"
    assert accused(found) == ["payments"]  # the callers only relayed it
    assert len(top.evidence["exemplar_trace_ids"]) == 3


@pytest.mark.parametrize("internal", [False, True], ids=["client-server", "all-internal"])
def test_latency_in_the_callee_own_work_blames_the_callee(internal: bool) -> None:
    found = localize(
        incident(Fault(own_ms={"payments": 200}), internal=internal),
        baseline=baseline(internal=internal),
    )
    assert accused(found) == ["payments"]
    assert found[0].fault_class == "latency"
    signal = found[0].evidence["signals"][0]
    assert signal["hop"] == "own work"
    assert signal["self_time_p50_ms"] > 5 * signal["baseline_self_time_p50_ms"]


@pytest.mark.parametrize("internal", [False, True], ids=["client-server", "all-internal"])
def test_a_wait_before_one_callee_answers_blames_the_callee(internal: bool) -> None:
    # The client span to payments grew, payments' own span did not: the network
    # or payments' queue, not checkout (whose call to inventory is as fast as ever).
    found = localize(
        incident(Fault(gap_to={"payments": 150}), internal=internal),
        baseline=baseline(internal=internal),
    )
    assert found[0].service == "payments"
    assert found[0].evidence["signals"][0]["hop"] == "wait on payments"


@pytest.mark.parametrize("internal", [False, True], ids=["client-server", "all-internal"])
def test_a_caller_waiting_on_every_callee_is_the_suspect(internal: bool) -> None:
    # Every call frontend makes takes longer while its callees' spans do not: its CPU.
    found = localize(
        incident(Fault(gap_from={"frontend": 60}), internal=internal),
        baseline=baseline(internal=internal),
    )
    assert found[0].service == "frontend"
    assert found[0].score > found[1].score


@pytest.mark.parametrize("internal", [False, True], ids=["client-server", "all-internal"])
def test_a_service_that_stops_making_its_calls_is_a_structural_fault(internal: bool) -> None:
    found = localize(
        incident(Fault(skip_own_calls="checkout"), internal=internal),
        baseline=baseline(internal=internal),
    )
    top = found[0]
    assert (top.service, top.fault_class) == ("checkout", "error")
    step = top.evidence["signals"][0]["unusual_step"]
    assert (step["after"], step["share"], step["baseline_share"]) == ("start", 1.0, 0.0)


def test_a_caller_that_gives_up_right_after_an_answer_blames_the_answer_first() -> None:
    found = localize(incident(Fault(stop_after="checkout")), baseline=baseline())
    assert [c.service for c in found[:2]] == ["checkout", "frontend"]
    assert found[0].fault_class == "error"


def test_a_service_slow_in_the_baseline_too_is_not_a_suspect() -> None:
    slow = Fault(own_ms={"inventory": 300})
    found = localize(
        window(150, Fault(own_ms={"inventory": 300, "payments": 200}), seed=2, start_ms=LATER),
        baseline=window(150, slow, seed=1),
    )
    assert accused(found) == ["payments"]


def test_an_earlier_incident_inside_the_baseline_does_not_hide_a_new_one() -> None:
    # A live store's history holds the last incident too: the baseline's worst
    # slices are not taken for normal.
    earlier = window(40, Fault(error="payments"), seed=3)
    calm = window(160, seed=1, start_ms=1.7e12 + 5_000)
    found = localize(incident(Fault(error="payments")), baseline=earlier + calm)
    assert found[0].service == "payments"
    assert found[0].evidence["signals"][0]["baseline_error_rate"] == 0.0


def test_traces_still_in_flight_are_not_structural_changes() -> None:
    # The newest traces of a live store lack the spans not yet exported (their
    # roots end last): missing parents must not read as calls that vanished.
    traces = incident(Fault())
    in_flight = [[s for s in t if s.parent_id] for t in traces[-40:]]
    assert_nothing_stands_out(localize(traces[:-40] + in_flight, baseline=baseline()), SHOP)


def test_duplicate_spans_count_once() -> None:
    traces = incident(Fault(error="payments"))
    doubled = [t + [copy.copy(s) for s in t] for t in traces]
    once, twice = localize(traces, baseline=baseline()), localize(doubled, baseline=baseline())
    assert [c.to_json() for c in once] == [c.to_json() for c in twice]


def test_without_a_baseline_the_change_point_inside_the_window_is_the_reference() -> None:
    before = window(120, seed=1)
    after = window(120, Fault(own_ms={"inventory": 150}), seed=2, start_ms=1.7e12 + 120 * 100 + 500)
    assert change_point(views(before + after)) in range(115, 126)
    top = localize(before + after)[0]
    assert top.service == "inventory"
    assert top.evidence["method"] == "change point"


def test_no_change_point_in_a_steady_window() -> None:
    assert change_point(views(window(240, seed=3))) is None


# --- statistics -------------------------------------------------------------------------


def test_robust_statistics_ignore_outliers() -> None:
    values = [10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 10.0, 5000.0]
    assert median(values) == 10.0
    assert mad_sigma(values) == pytest.approx(0.7413, abs=1e-3)


def test_excess_weight_is_zero_unless_significant() -> None:
    assert excess_weight(12, 100, 10, 100) == 0.0  # 12% now, 10% before: noise
    assert excess_weight(60, 100, 10, 100) == pytest.approx(1 - 10.5 / 101 / 0.6)
    assert excess_weight(5, 5, 0, 0) == 1.0  # nothing to compare with: all of it is new


def _shop_call(i: int, hung: bool) -> list[Span]:
    """checkout calls inventory and payments; both client spans are named "POST" only,
    as HTTP client instrumentations name them, and tell the callee by server.address."""
    t, base = f"{i:032x}", i * 10_000.0
    root = span(t, "checkout", "POST /checkout", base, base + (2100 if hung else 60))
    inv = span(t, "checkout", "POST", base + 1, base + 20, root, SpanKind.CLIENT,
               **{"server.address": "127.0.0.1", "server.port": 8101})  # fmt: skip
    inv_srv = span(t, "inventory", "POST /reserve", base + 2, base + 19, inv)
    end = base + (2021 if hung else 50)
    pay = span(t, "checkout", "POST", base + 21, end, root, SpanKind.CLIENT,
               **{"server.address": "127.0.0.1", "server.port": 8102})  # fmt: skip
    if not hung:
        return [
            root,
            inv,
            inv_srv,
            pay,
            span(t, "payments", "POST /charge", base + 22, end - 1, pay),
        ]
    pay.error = True
    pay.events = [SpanEvent("exception", 0, {"exception.type": "httpx.ReadTimeout",
                                             "exception.message": "timed out"})]  # fmt: skip
    root.error = True
    root.attributes = {"http.response.status_code": 500}
    return [root, inv, inv_srv, pay]


def test_a_hung_callee_behind_a_shared_client_span_name_is_found_by_its_address() -> None:
    found = localize(
        [_shop_call(i, hung=i % 2 == 0) for i in range(100, 160)],
        baseline=[_shop_call(i, hung=False) for i in range(60)],
    )
    assert (found[0].service, found[0].fault_class) == ("payments", "timeout")
    assert found[0].exception == "httpx.ReadTimeout: timed out"
    assert {c.service for c in found} == {"checkout", "inventory", "payments"}


def _chain_in_flight(i: int, hung: bool) -> list[Span]:
    """frontend -> checkout -> payments. When payments hangs, frontend gives up first: its
    call fails while checkout's span is still open (not exported), though checkout's own
    failed call to payments, under it, already is."""
    t, base = f"{i:032x}", i * 10_000.0
    root = span(t, "frontend", "POST /api/checkout", base, base + (2010 if hung else 80))
    out = span(t, "frontend", "POST", base + 1, base + (2005 if hung else 75), root,
               SpanKind.CLIENT, **{"server.address": "127.0.0.1", "server.port": 8100})  # fmt: skip
    srv = span(t, "checkout", "POST /checkout", base + 2, base + 70, out)
    pay = span(t, "checkout", "POST", base + 5, base + (2050 if hung else 60), srv,
               SpanKind.CLIENT, **{"server.address": "127.0.0.1", "server.port": 8102})  # fmt: skip
    if not hung:
        return [root, out, srv, pay, span(t, "payments", "POST /charge", base + 6, base + 59, pay)]
    for failed in (out, pay):
        failed.error = True
        failed.events = [SpanEvent("exception", 0, {"exception.type": "httpx.ReadTimeout",
                                                    "exception.message": ""})]  # fmt: skip
    root.error = True
    return [root, out, pay]  # checkout's server span is still open


def test_a_hang_two_levels_down_blames_the_hung_service_not_the_one_still_waiting() -> None:
    found = localize(
        [_chain_in_flight(i, hung=i % 2 == 0) for i in range(100, 160)],
        baseline=[_chain_in_flight(i, hung=False) for i in range(60)],
    )
    assert (found[0].service, found[0].fault_class) == ("payments", "timeout")


def _front_call(i: int, trouble: str) -> list[Span]:
    """frontend -> checkout (a pool checkout, a call to inventory, SQL). In trouble, every
    other call from frontend times out while checkout's span is still open; the calls
    checkout does finish meanwhile are slower in its own work when it is starved
    ("starved"), and at their usual pace when it is hung on something untraced ("hung")."""
    t, base = f"{i:032x}", i * 10_000.0
    stuck = trouble != "none" and i % 2 == 0
    slow = 20.0 if trouble == "starved" and not stuck else 1.0
    waits = 20.0 if trouble == "waiting" and not stuck else 1.0
    root = span(t, "frontend", "POST /api/checkout", base, base + (2010 if stuck else 90))
    out = span(t, "frontend", "POST", base + 1, base + (2005 if stuck else 85), root,
               SpanKind.CLIENT, **{"server.address": "127.0.0.1", "server.port": 8100})  # fmt: skip
    if stuck:
        for failed in (root, out):
            failed.error = True
        out.events = [SpanEvent("exception", 0, {"exception.type": "httpx.ReadTimeout",
                                                 "exception.message": ""})]  # fmt: skip
        return [root, out]
    srv = span(t, "checkout", "POST /checkout", base + 2, base + 80, out)
    pool = span(t, "checkout", "connect", base + 3, base + 3 + 0.5 * slow * waits, srv,
                SpanKind.CLIENT)  # fmt: skip
    get = span(t, "checkout", "GET", base + 10, base + 30 + 4 * slow, srv, SpanKind.CLIENT,
               **{"server.address": "127.0.0.1", "server.port": 8101})  # fmt: skip
    inv = span(t, "inventory", "GET /reserve", base + 11 + 2 * slow, base + 29 + 2 * slow, get)
    # Work that is mostly a wait on others hardly shows a starved process.
    sql = span(t, "checkout", "INSERT shop", base + 40, base + 40 + 5 * waits, srv, SpanKind.CLIENT)
    pay = span(t, "checkout", "POST", base + 50, base + 75, srv, SpanKind.CLIENT,
               **{"server.address": "127.0.0.1", "server.port": 8102})  # fmt: skip
    charge = span(t, "payments", "POST /charge", base + 51, base + 74, pay)
    return [root, out, srv, pool, get, inv, sql, pay, charge]


@pytest.mark.parametrize(
    ("trouble", "fault_class"),
    # "waiting": what it finishes waited longer on its pool and its database, whose
    # answers nobody traced: a wait on others (a hang holding connections), not its CPU
    [("starved", "cpu"), ("hung", "timeout"), ("waiting", "timeout")],
)
def test_callers_timing_out_on_a_starved_service_read_as_cpu_not_a_hang(
    trouble: str, fault_class: str
) -> None:
    found = localize(
        [_front_call(i, trouble) for i in range(100, 160)],
        baseline=[_front_call(i, "none") for i in range(60)],
    )
    assert (found[0].service, found[0].fault_class) == ("checkout", fault_class)


def _login(i: int, refused: bool) -> list[Span]:
    """gateway -> auth. A wrong password is a 401: the client span fails (HTTP semantic
    conventions), auth's server span does not. 3% of logins, always."""
    t, base = f"{i:032x}", i * 10_000.0
    root = span(t, "gateway", "POST /login", base, base + 30)
    out = span(t, "gateway", "POST", base + 1, base + 25, root, SpanKind.CLIENT,
               **{"server.address": "auth", "http.response.status_code": 401 if refused else 200})  # fmt: skip
    out.error = refused
    srv = span(t, "auth", "POST /login", base + 2, base + 24, out,
               **{"http.response.status_code": 401 if refused else 200})  # fmt: skip
    return [root, out, srv]


def test_a_callee_refusing_requests_as_designed_is_not_a_fault() -> None:
    found = localize([_login(i, refused=i % 30 == 0) for i in range(300)])
    assert all(c.fault_class != "error" or c.service != "auth" for c in found)
    assert accused(found) == []


def _inventory_slow(i: int) -> list[Span]:
    """An earlier fault, over by now: inventory (and the call to it) 900 ms slower."""
    trace = _shop_call(i, hung=False)
    for s in trace:
        to_inventory = s.name == "POST" and s.attributes.get("server.port") == 8101
        if s.service == "inventory" or s.name == "POST /checkout" or to_inventory:
            s.end_ns += 900 * MS
    return trace


def test_an_earlier_fault_in_the_look_back_is_not_taken_for_the_one_that_began_now() -> None:
    earlier = [_inventory_slow(i) for i in range(60)]
    healthy = [_shop_call(i, hung=False) for i in range(60, 200)]
    now = [_shop_call(i, hung=i % 2 == 0) for i in range(200, 240)]  # payments hangs
    onset_ns = int(200 * 10_000 * MS)  # the detector's first bad second
    found = localize(earlier + healthy + now, onset_ns=onset_ns)
    assert (found[0].service, found[0].fault_class) == ("payments", "timeout")
    assert found[0].evidence["method"] == "onset"


POOL = ("sqlalchemy.exc.TimeoutError",
        "QueuePool limit of size 2 overflow 0 reached, connection timed out, timeout 1.00")  # fmt: skip


def _products(i: int, trouble: bool, failure: tuple[str, str] = POOL) -> list[Span]:
    """gateway -> catalog, whose requests wait (for a connection, for memory); a few fail."""
    t, base = f"{i:032x}", i * 10_000.0
    waits = trouble and i % 3 != 0
    fails = trouble and i % 30 == 0
    took = 1500.0 if waits or fails else 15.0
    root = span(t, "gateway", "GET /products", base, base + took + 10)
    out = span(t, "gateway", "GET", base + 1, base + took + 5, root, SpanKind.CLIENT,
               **{"server.address": "catalog", "server.port": 5000})  # fmt: skip
    srv = span(t, "catalog", "GET /products", base + 2, base + took + 4, out,
               error=failure[1] or failure[0] if fails else None)  # fmt: skip
    if fails:
        srv.events[0].attributes.update(
            {"exception.type": failure[0], "exception.message": failure[1]}
        )
        out.error = root.error = True
    return [root, out, srv]


@pytest.mark.parametrize(
    ("failure", "fault_class"), [(POOL, "saturation"), (("MemoryError", ""), "memory")]
)
def test_a_few_failures_name_the_class_of_the_waits_around_them(
    failure: tuple[str, str], fault_class: str
) -> None:
    found = localize(
        [_products(i, trouble=True, failure=failure) for i in range(100, 190)],
        baseline=[_products(i, trouble=False) for i in range(90)],
    )
    assert (found[0].service, found[0].fault_class) == ("catalog", fault_class)


def _store_of(starts_s: list[float]) -> TraceStore:
    """A real trace store holding one one-span trace started at each of ``starts_s``."""
    store = TraceStore()
    store.add(
        [span(f"{i:032x}", "api", "GET /", s * 1e3, s * 1e3 + 20) for i, s in enumerate(starts_s)]
    )
    return store


def test_the_live_brain_reaches_further_back_on_a_quiet_system() -> None:
    from sre_space.rca.localize import LIVE_LOOKBACK_S, LIVE_REFERENCE_TRACES, live_window

    window_start = 1000.0
    # A request every 5 s for the ten minutes before the window: 12 in the last minute.
    quiet = _store_of([window_start - 600 + 5 * i for i in range(130)])
    got = live_window(quiet.traces_since, int(window_start * 1e9))
    before = [t for t in got if t[0].start_ns < window_start * 1e9]
    assert len(before) == LIVE_REFERENCE_TRACES
    assert min(t[0].start_ns for t in got) < (window_start - LIVE_LOOKBACK_S) * 1e9
    # A busy one (ten a second): the minute before the window is enough, and only it is read.
    busy = _store_of([window_start - 300 + 0.1 * i for i in range(3100)])
    got = live_window(busy.traces_since, int(window_start * 1e9))
    assert min(t[0].start_ns for t in got) >= (window_start - LIVE_LOOKBACK_S) * 1e9
    assert len(got) == len(busy.traces_since(int((window_start - LIVE_LOOKBACK_S) * 1e9)))
