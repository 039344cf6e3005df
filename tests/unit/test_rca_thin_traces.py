"""The Brain on thin traces: no status codes, no span kinds, deep in-process spans.

Java services instrumented by OpenTelemetry's agent record a controller, a
repository and a query inside each request, mark every span INTERNAL, and a
reactive gateway records its handler beside its call out rather than above
it. These tests build such traces by hand, with the answer known by
construction, and check the evidence that holds there.
"""

from __future__ import annotations

import itertools
import random

from sre_space.rca.candidate import Candidate
from sre_space.rca.localize import localize
from sre_space.rca.stats import rank_shift
from sre_space.rca.traces import ERROR_DISPATCH, failed, views
from sre_space.telemetry.model import Span, SpanKind

_ids = itertools.count(1)
MS = 1_000_000
LATER = 60_000.0  # the incident starts a minute after the baseline


class Trace:
    """A trace built top-down: every span INTERNAL, no status, as the Java agent's here."""

    def __init__(self, start_ms: float) -> None:
        self.trace_id = f"{next(_ids):032x}"
        self.spans: list[Span] = []
        self.start_ms = start_ms

    def add(
        self, service: str, name: str, start: float, end: float, parent: Span | None = None
    ) -> Span:
        s = Span(
            trace_id=self.trace_id,
            span_id=f"{next(_ids):016x}",
            parent_id=parent.span_id if parent else None,
            service=service,
            name=name,
            start_ns=int((self.start_ms + start) * MS),
            end_ns=int((self.start_ms + end) * MS),
            kind=SpanKind.INTERNAL,
            error=False,
            attributes={},
            events=[],
        )
        self.spans.append(s)
        return s


def accused(found: list[Candidate]) -> list[str]:
    return [c.service for c in found if c.evidence.get("explained_traces")]


def _gateway_trace(t0: float, api_ms: float, rnd: random.Random) -> list[Span]:
    """gateway (reactive: its handler span lasts as long as the call out beside it) -> api."""
    t = Trace(t0)
    total = api_ms + 4 + rnd.uniform(0, 1)
    root = t.add("gateway", "/*", 0, total)
    t.add("gateway", "FilteringWebHandler.handle", 0.2, total - 0.1, root)
    out = t.add("gateway", "HTTP POST", 0.5, total - 0.5, root)
    entry = t.add("api", "/api/orders", 1, total - 1, out)
    ctrl = t.add("api", "OrderController.list", 1.2, total - 1.2, entry)
    t.add("api", "SELECT orders", 1.5, 1.5 + api_ms * 0.2, ctrl)
    return t.spans


def test_a_reactive_handler_beside_its_call_out_is_not_blamed_for_the_callee() -> None:
    rnd = random.Random(1)
    base = [_gateway_trace(i * 100.0, rnd.uniform(20, 30), rnd) for i in range(60)]
    inc = [_gateway_trace(LATER + i * 100.0, rnd.uniform(200, 300), rnd) for i in range(60)]
    found = localize(inc, baseline=base)
    assert found[0].service == "api"
    # the handler's self time is its own, not the wait on the call beside it
    handler = next(c for v in views(inc) for c in v.calls if c.key[1].startswith("Filtering"))
    assert handler.self_ms < 2.0


def _booking(t0: float, rnd: random.Random, contacts_factor: float, with_contacts: bool) -> Trace:
    """front -> seats (busy, every request); sometimes front -> contacts, whose own work is
    spread over a controller, a repository and a query, a small part of a long request."""
    t = Trace(t0)
    seats_ms = rnd.uniform(400, 800)
    root = t.add("front", "/book", 0, seats_ms + 60)
    s_out = t.add("front", "HTTP GET", 1, seats_ms, root)
    s_in = t.add("seats", "/seats", 2, seats_ms - 1, s_out)
    t.add("seats", "SELECT seats", 3, seats_ms - 2, s_in)
    if with_contacts:
        own = rnd.uniform(8, 12) * contacts_factor
        c_out = t.add("front", "HTTP GET", seats_ms + 2, seats_ms + 6 + own, root)
        c_in = t.add("contacts", "/contacts/{id}", seats_ms + 3, seats_ms + 5 + own, c_out)
        ctrl = t.add(
            "contacts", "ContactsController.get", seats_ms + 3.2, seats_ms + 4.8 + own, c_in
        )
        repo = t.add(
            "contacts",
            "ContactsRepository.findById",
            seats_ms + 3.4,
            seats_ms + 3.4 + own / 2,
            ctrl,
        )
        t.add("contacts", "SELECT contacts", seats_ms + 3.5, seats_ms + 3.4 + own / 3, repo)
    return t


def test_a_cpu_starved_service_with_few_calls_is_found_by_its_own_time() -> None:
    """Six requests reach it in each window: too few to count slow calls, enough to rank."""
    rnd = random.Random(2)

    def window(t0: float, factor: float) -> list[list[Span]]:
        return [_booking(t0 + i * 1000.0, rnd, factor, i % 10 == 0).spans for i in range(60)]

    found = localize(window(LATER, 20.0), baseline=window(0.0, 1.0))
    assert found[0].service == "contacts"
    signal = found[0].evidence["signals"][0]
    assert signal["own_time"]["visits"] == 6
    assert signal["own_time"]["p50_ms"] > 10 * signal["own_time"]["baseline_p50_ms"]


def test_a_service_a_little_slower_everywhere_is_not_named_by_its_own_time() -> None:
    """Another hour's load moves every service's time a little: no fault."""
    rnd = random.Random(3)

    def window(t0: float, factor: float) -> list[list[Span]]:
        return [_booking(t0 + i * 1000.0, rnd, factor, i % 2 == 0).spans for i in range(80)]

    found = localize(window(LATER, 1.15), baseline=window(0.0, 1.0))
    assert found[0].service != "contacts"
    assert not any("own_time" in s for c in found for s in c.evidence.get("signals", []))


def _checkout(t0: float, fails: bool) -> list[Span]:
    """front -> orders; a failed request shows only as Spring's error dispatch, no status."""
    t = Trace(t0)
    root = t.add("front", "/checkout", 0, 30)
    out = t.add("front", "HTTP POST", 1, 29, root)
    entry = t.add("orders", "/orders", 2, 28, out)
    ctrl = t.add("orders", "OrderController.create", 2.5, 10 if fails else 26, entry)
    if fails:
        t.add("orders", "BasicErrorController.error", 11, 12, entry)
    else:
        t.add("orders", "INSERT orders", 3, 20, ctrl)
    return t.spans


def test_springs_error_dispatch_is_a_failure_where_spans_carry_no_status() -> None:
    base = [_checkout(i * 100.0, False) for i in range(60)]
    inc = [_checkout(LATER + i * 100.0, i % 2 == 0) for i in range(60)]
    dispatch = next(s for t in inc for s in t if s.name in ERROR_DISPATCH)
    assert failed(dispatch) and not dispatch.error
    found = localize(inc, baseline=base)
    assert found[0].service == "orders"
    kinds = {s["kind"] for s in found[0].evidence["signals"]}
    assert "error" in kinds
    # the dispatch is no call the code made: the request's sequence does not list it
    entry = next(c for c in views(inc[:1])[0].calls if c.key == ("orders", "/orders"))
    assert ("orders", "BasicErrorController.error") not in entry.sequence


def _routed(t0: float, via: str) -> list[Span]:
    """via -> pricing; pricing reads the table its caller's kind of request needs."""
    t = Trace(t0)
    root = t.add(via, f"/{via}", 0, 20)
    out = t.add(via, "HTTP GET", 1, 19, root)
    entry = t.add("pricing", "/price", 2, 18, out)
    t.add("pricing", "SELECT train_price" if via == "trains" else "SELECT bus_price", 3, 15, entry)
    return t.spans


def test_what_a_service_calls_depends_on_who_asked() -> None:
    """The mix of callers changes between windows; no service changed its behaviour."""
    rnd = random.Random(4)
    base = [_routed(i * 100.0, "trains" if rnd.random() < 0.8 else "buses") for i in range(100)]
    inc = [
        _routed(LATER + i * 100.0, "trains" if rnd.random() < 0.2 else "buses") for i in range(100)
    ]
    found = localize(inc, baseline=base)
    assert "pricing" not in accused(found)


def test_rank_shift() -> None:
    z, above = rank_shift([10.0] * 9, [1.0] * 7)
    assert above == 1.0 and z > 3.5
    z, above = rank_shift([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert above == 0.5 and abs(z) < 1e-9
    z, above = rank_shift([1.0, 2.0], [5.0, 6.0, 7.0])
    assert above == 0.0 and z < 0
    assert rank_shift([], [1.0]) == (0.0, 0.5)


def _login(t0: float, wrong_answer: bool) -> list[Span]:
    """auth -> codes, then auth's own work; a wrong answer from codes makes auth fail
    after it (Spring's error dispatch, no status, no message): the answer looked normal."""
    t = Trace(t0)
    root = t.add("gateway", "/*", 0, 40)
    out = t.add("gateway", "HTTP POST", 1, 39, root)
    entry = t.add("auth", "/login", 2, 38, out)
    ctrl = t.add("auth", "UserController.login", 2.5, 20 if wrong_answer else 36, entry)
    call = t.add("auth", "HTTP GET", 3, 12, ctrl)
    code = t.add("codes", "/verify/{code}", 4, 11, call)
    t.add("codes", "VerifyController.verify", 4.5, 10.5, code)
    if wrong_answer:
        t.add("auth", "BasicErrorController.error", 21, 22, entry)
    else:
        t.add("auth", "SELECT users", 13, 30, ctrl)
    return t.spans


def test_a_failure_without_an_account_right_after_an_answer_shares_the_blame_with_it() -> None:
    """The error dispatch is where the failure shows, not necessarily where it began."""
    base = [_login(i * 100.0, False) for i in range(60)]
    inc = [_login(LATER + i * 100.0, i % 2 == 0) for i in range(60)]
    found = localize(inc, baseline=base)
    assert found[0].service == "codes"
    assert found[1].service == "auth"  # it failed, and keeps a share of the blame


def _fan_out(t0: float, rnd: random.Random, slow_users_ms: float, users: bool) -> list[Span]:
    """shop -> one HTTP client span name ("HTTP GET", as HTTP clients name them) to three
    callees; the users service's answers wait ``slow_users_ms`` on the way back (its
    network): its own span and every other span keep their durations."""
    t = Trace(t0)
    root = t.add("shop", "/order", 0, 400)
    ctrl = t.add("shop", "OrderController.place", 0.5, 399.5, root)
    at = 1.0
    for callee in ("stock", "prices", "users") if users else ("stock", "prices"):
        work = rnd.uniform(3, 6)
        wait = slow_users_ms if callee == "users" else 0.0
        out = t.add("shop", "HTTP GET", at, at + work + 2 + wait, ctrl)
        t.add(callee, f"/{callee}", at + 1, at + 1 + work, out)
        at += work + 3 + wait
    return t.spans


def test_a_wait_on_one_of_several_callees_behind_one_span_name_is_the_callees() -> None:
    """Eight slow calls among a hundred and fifty of one operation are no rate to test;
    on their own edge (the calls the users service answered) they all rose."""
    rnd = random.Random(5)
    base = [_fan_out(i * 500.0, rnd, 0.0, i % 6 == 0) for i in range(60)]
    inc = [_fan_out(LATER + i * 500.0, rnd, 80.0, i % 6 == 0) for i in range(48)]
    found = localize(inc, baseline=base)
    assert found[0].service == "users"
    assert found[0].fault_class == "latency"


def _caller_of_users(
    t0: float, rnd: random.Random, caller: str, slow_users_ms: float
) -> list[Span]:
    """``caller`` -> users, one call: the users service's answer waits ``slow_users_ms``."""
    t = Trace(t0)
    work = rnd.uniform(3, 6)
    total = work + 8 + slow_users_ms
    root = t.add(caller, f"/{caller}", 0, total)
    ctrl = t.add(caller, f"{caller.title()}Controller.handle", 0.5, total - 0.5, root)
    out = t.add(caller, "HTTP GET", 1.0, 1.0 + work + 2 + slow_users_ms, ctrl)
    t.add("users", "/users", 2.0, 2.0 + work, out)
    return t.spans


def test_callers_the_baseline_barely_knows_do_not_clear_the_callee_they_wait_on() -> None:
    """The users service's network is slow, and so every caller's wait on it. One caller
    is well known to the baseline; one was seen there twice, one never: the reference
    cannot say whether their waits grew, which is no opinion, not evidence that
    users is fine for them (and so that the known caller is to blame)."""
    rnd = random.Random(11)
    base = [_fan_out(i * 500.0, rnd, 0.0, True) for i in range(40)]
    base += [_caller_of_users(20_000.0 + i * 500.0, rnd, "returns", 0.0) for i in range(2)]
    inc = [_fan_out(LATER + i * 500.0, rnd, 150.0, True) for i in range(12)]
    inc += [_caller_of_users(LATER + 100.0 + i * 500.0, rnd, "returns", 150.0) for i in range(10)]
    inc += [_caller_of_users(LATER + 200.0 + i * 500.0, rnd, "billing", 150.0) for i in range(10)]
    found = localize(inc, baseline=base)
    assert found[0].service == "users"
    assert found[0].fault_class == "latency"
