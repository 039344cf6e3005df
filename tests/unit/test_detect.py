"""Scout's detectors on a simulated clock: static rules, learned baselines, incidents."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from sre_space.detect.rules import Rules, ServiceRule
from sre_space.detect.tracker import IncidentTracker, origins
from sre_space.detect.window import Signal, WindowDetector
from sre_space.telemetry.model import Span, SpanKind

_ids = itertools.count(1)
WINDOW_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def requests(
    service: str,
    n: int,
    ms: float,
    *,
    errors: int = 0,
    op: str = "GET /",
    kind: SpanKind = SpanKind.SERVER,
) -> list[Span]:
    out = []
    for i in range(n):
        sid = next(_ids)
        out.append(
            Span(
                f"{sid:032x}",
                f"{sid:016x}",
                None,
                service,
                op,
                0,
                int(ms * 1e6),
                kind,
                error=i < errors,
            )
        )
    return out


class Sim:
    """A detector fed once a simulated second."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.clock = Clock()
        self.detector = WindowDetector(WINDOW_S, 800.0, rules=rules, clock=self.clock)

    def run(self, seconds: int, *batches: list[Span] | None) -> list[Signal]:
        for _ in range(seconds):
            self.clock.now += 1
            for batch in batches:
                if batch:
                    self.detector.observe(batch)
        return self.anomalous()

    def anomalous(self) -> list[Signal]:
        return self.detector.anomalous(0.05, 10)

    def kinds(self) -> dict[str, str]:
        return {f"{s.service} {s.operation}": s.kind for s in self.anomalous()}


def test_error_status_over_the_threshold_is_anomalous() -> None:
    sim = Sim()
    sim.run(60, requests("checkout", 20, 30))
    assert sim.anomalous() == []
    [signal] = sim.run(10, requests("checkout", 20, 30, errors=4))
    assert (signal.service, signal.kind) == ("checkout", "error")
    assert signal.error_rate == pytest.approx(0.2)
    assert signal.baseline_error_rate == 0.0
    assert signal.first_bad_at is not None


def test_one_error_in_a_quiet_window_is_bad_luck_not_an_incident() -> None:
    sim = Sim()
    sim.run(60, requests("pay", 1, 30))
    sim.run(1, requests("pay", 1, 30, errors=1))  # 1 of the window's 10: 10%
    assert sim.run(8, requests("pay", 1, 30)) == []
    assert [s.kind for s in sim.run(5, requests("pay", 1, 30, errors=1))] == ["error"]


def test_errors_are_judged_against_the_learned_error_rate() -> None:
    sim = Sim()
    sim.run(60, requests("auth", 20, 30, errors=2))  # always 10% (say, wrong passwords)
    assert sim.run(10, requests("auth", 20, 30, errors=3)) == []  # 15%: not 5 points above
    assert sim.kinds() == {}
    assert sim.run(10, requests("auth", 20, 30, errors=6)) != []  # 30%


def test_static_rules_are_configurable_per_service() -> None:
    rules = Rules(latency_ms=800, services={"reports": ServiceRule(latency_ms=5000, errors=False)})
    sim = Sim(rules=rules)
    sim.run(60, requests("reports", 20, 1200), requests("api", 20, 30))
    slow = sim.run(10, requests("reports", 20, 1200, errors=5), requests("api", 20, 1200))
    assert {s.service: s.kind for s in slow} == {"api": "slow"}
    assert (
        Rules.from_mapping({"services": {"reports": {"latency_ms": 5000}}}).latency_for("reports")
        == 5000.0
    )
    with pytest.raises(ValueError, match="unknown rule"):
        Rules.from_mapping({"latency": 1})


def test_a_cold_start_learns_a_usual_slow_tail_and_judges_errors_at_once() -> None:
    sim = Sim()
    # Three requests in twenty always over the limit (a search's tail), from the first second.
    usual = requests("search", 17, 40) + requests("search", 3, 1200)
    seen = [s.kind for _ in range(40) for s in sim.run(1, usual, requests("cart", 20, 30))]
    assert seen == []  # learned, never an incident
    assert [s.kind for s in sim.run(10, usual, requests("cart", 20, 30, errors=5))] == ["error"]
    # Past the learned share, the same rule speaks: now more than half are slow.
    worse = requests("search", 8, 40) + requests("search", 12, 1200)
    assert ("search", "slow") in {(s.service, s.kind) for s in sim.run(10, worse)}
    # An operation that first shows up later is judged at once: nothing says it is usual.
    fresh = sim.run(10, usual, requests("export", 20, 1500, op="POST /export"))
    assert ("export", "slow") in {(s.service, s.kind) for s in fresh}


def test_an_always_slow_service_is_not_an_incident_but_one_that_doubled_is() -> None:
    sim = Sim()
    batch, fast = requests("batch", 20, 1500), requests("api", 20, 40)
    sim.run(90, batch, fast)  # static rules flag batch at first; then its baseline knows it
    assert sim.kinds() == {}
    doubled = sim.run(10, batch, requests("api", 20, 100))
    assert [(s.service, s.kind) for s in doubled] == [("api", "latency")]
    assert doubled[0].baseline_p95_ms == pytest.approx(40.0)
    assert sim.run(10, batch, requests("api", 20, 50)) == []  # 1.25x: within normal


def test_a_few_unlucky_requests_do_not_make_a_slowdown_but_many_do() -> None:
    sim = Sim()
    sim.run(90, requests("api", 3, 40))
    # A GC pause: three requests of the thirty in the window are slow; the p95 jumps.
    assert sim.run(1, requests("api", 3, 300)) == []
    slowed = sim.run(4, requests("api", 3, 300))  # every request, for a few seconds
    assert [(s.service, s.kind) for s in slowed] == [("api", "latency")]


def test_traffic_that_drops_or_vanishes_is_anomalous() -> None:
    sim = Sim()
    sim.run(60, requests("search", 20, 10), requests("cart", 20, 10))
    # Fewer requests must hold a while: half the window (exporters send in batches).
    for _ in range(6):
        sim.run(1, requests("search", 2, 10))
        assert sim.anomalous() == []
    signals = sim.run(6, requests("search", 2, 10))
    assert {s.service: s.kind for s in signals} == {"search": "traffic", "cart": "structure"}
    assert {s.service: s.reason for s in signals}["cart"].startswith("vanished")


def poisson(rnd: random.Random, mean: float) -> int:
    n, t = 0, rnd.expovariate(mean)
    while t < 1:
        n, t = n + 1, t + rnd.expovariate(mean)
    return n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_traffic_that_ebbs_over_minutes_is_not_a_drop_but_a_sudden_fall_is(seed: int) -> None:
    sim, rnd = Sim(), random.Random(seed)
    seen = set()
    for second in range(1200):  # 6 requests/s, 40% less at the ebb, every 5 minutes
        mean = 6 * (1 + 0.4 * math.sin(2 * math.pi * second / 300))
        sim.run(1, requests("search", poisson(rnd, mean), 10))
        if second > 600:
            seen |= {s.kind for s in sim.anomalous()}
    assert seen == set()
    fell = set()
    for _ in range(15):  # a fall from where it just was, judged every second as Scout does
        fell |= {s.kind for s in sim.run(1, requests("search", poisson(rnd, 0.5), 10))}
    assert fell == {"traffic"}


@pytest.mark.parametrize("seed", [1, 2])
def test_a_quiet_operations_steep_ebb_is_not_a_drop(seed: int) -> None:
    # 2.5 requests/s, half that at the ebb, every 200 s: a window holds a few
    # dozen requests, so chance, and a minute's history that lags the ebb, are
    # most of any fall. A detector that takes the last minute's rate as known
    # exactly calls a drop here a few times an hour.
    sim, rnd = Sim(), random.Random(seed)
    seen = []
    for second in range(3600):
        mean = 2.5 * (1 + 0.5 * math.sin(2 * math.pi * second / 200))
        sim.run(1, requests("search", poisson(rnd, mean), 10))
        if second > 600:
            seen += [(second, s.reason) for s in sim.anomalous()]
    assert seen == []


def test_spans_exported_in_batches_are_not_a_traffic_drop_when_one_comes_late() -> None:
    sim = Sim()
    batch = requests("search", 100, 10)  # 20 requests/s, sent every 5 s as the SDK does
    for second in range(90):
        sim.run(1, batch if second % 5 == 0 else None)
    seen = set()
    for second in range(20):  # one export is 4 s late (a busy exporter), then on time
        sim.run(1, batch if second in (4, 9, 14, 19) else None)
        seen |= {s.kind for s in sim.anomalous()}
    assert seen == set()


def test_a_new_operation_after_the_warm_up_is_a_structural_change() -> None:
    sim = Sim()
    sim.run(60, requests("checkout", 20, 10))
    signals = sim.run(5, requests("checkout", 20, 10), requests("checkout", 5, 10, op="fallback"))
    assert [(s.operation, s.kind) for s in signals] == [("fallback", "structure")]


def test_no_flapping_an_anomaly_ends_only_when_clearly_over() -> None:
    sim = Sim()
    sim.run(60, requests("pay", 100, 10))
    assert sim.run(10, requests("pay", 100, 10, errors=8))  # 8%: over the 5% bar
    for _ in range(10):  # 4% holds it (bar to stay: 2.5%), second after second
        assert sim.run(1, requests("pay", 100, 10, errors=4))
    assert sim.run(10, requests("pay", 100, 10, errors=1)) == []
    # and once clear, 4% is not enough to enter again
    assert sim.run(10, requests("pay", 100, 10, errors=4)) == []


def test_reset_forgets_the_window_not_what_was_learned() -> None:
    sim = Sim()
    sim.run(60, requests("pay", 20, 10))
    assert sim.run(10, requests("pay", 20, 10, errors=10))
    sim.detector.reset()
    assert sim.anomalous() == []
    assert sim.run(10, requests("pay", 20, 10, errors=10))  # the baseline still says 0%


def test_entries_marked_internal_are_learned_from_their_callers() -> None:
    """Instrumentations that mark every span INTERNAL: the call tree shows the entries."""
    sim = Sim()

    def traces(n: int, errors: bool) -> list[Span]:
        out = []
        for i in range(n):
            tid = f"{next(_ids):031x}0"  # followed: the detector samples by trace id
            root = Span(tid, f"{next(_ids):016x}", None, "web", "GET /", 0, 10**7, SpanKind.SERVER)
            call = Span(tid, f"{next(_ids):016x}", root.span_id, "web", "call db", 0, 10**7)
            entry = Span(tid, f"{next(_ids):016x}", call.span_id, "store", "query", 0, 10**7)
            entry.error = errors and i % 2 == 0
            out += [entry, call, root]  # children end first, and are exported first
        return out

    sim.run(60, traces(20, errors=False))
    assert ("web", "store") in sim.detector.edges()
    assert {s.service: s.kind for s in sim.run(10, traces(20, errors=True))} == {"store": "error"}


def test_a_new_call_between_services_after_the_warm_up_is_a_structural_change() -> None:
    sim = Sim()

    def calls(callee: str, n: int) -> list[Span]:
        out = []
        for _ in range(n):
            tid = f"{next(_ids):031x}0"
            root = Span(tid, f"{next(_ids):016x}", None, "web", "GET /", 0, 10**7, SpanKind.SERVER)
            out += [Span(tid, f"{next(_ids):016x}", root.span_id, callee, "get", 0, 10**6), root]
        return out

    sim.run(60, calls("cache", 5))
    assert sim.anomalous() == []
    signals = sim.run(3, calls("cache", 5), calls("database", 2))
    assert [(s.service, s.kind, s.reason) for s in signals] == [
        ("database", "structure", "web started calling database")
    ]


# --- incidents: grouping, confirmation, quiet period -------------------------------------


def sig(service: str, kind: str = "error") -> Signal:
    return Signal(service, "op", 100, 50, 0, 10.0, kind=kind)


CHAIN = [("web", "api"), ("api", "orders"), ("orders", "payments"), ("payments", "bank")]


def test_a_cascade_across_five_services_is_one_incident() -> None:
    tracker = IncidentTracker(confirm_s=2, quiet_s=30)
    cascade = [sig(s) for s in ("web", "api", "orders", "payments", "bank")]
    assert tracker.update(cascade, CHAIN, now=0) == []  # not yet confirmed
    [change] = tracker.update(cascade, CHAIN, now=2)
    assert change.what == "opened"
    assert change.incident.services == {"web", "api", "orders", "payments", "bank"}
    assert len(tracker.active()) == 1


def test_unrelated_failures_are_separate_incidents_and_a_shared_caller_joins_both() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30)
    edges = [*CHAIN, ("web", "search")]
    changes = tracker.update([sig("bank"), sig("mailer")], edges, now=0)
    assert sorted(c.incident.origin for c in changes) == ["bank", "mailer"]
    by_origin = origins([sig("web"), sig("api"), sig("bank"), sig("search")], edges)
    assert {o: sorted(s.service for s in g) for o, g in by_origin.items()} == {
        "api": ["api", "web"],  # api's callee is well: the cascade goes no deeper
        "bank": ["bank"],
        "search": ["search", "web"],
    }
    [grew] = tracker.update([sig("bank"), sig("payments"), sig("mailer")], edges, now=1)
    assert grew.what == "grew" and grew.incident.services == {"bank", "payments"}
    assert len(tracker.active()) == 2


def test_fewer_requests_flow_down_so_a_drop_has_its_origin_at_the_top() -> None:
    # Clients send less: every service in the chain receives less. One drop, at web.
    drop = [sig(s, "traffic") for s in ("web", "api", "orders")]
    assert {o: sorted(x.service for x in g) for o, g in origins(drop, CHAIN).items()} == {
        "web": ["api", "orders", "web"]
    }
    tracker = IncidentTracker(confirm_s=0, quiet_s=30)
    [change] = tracker.update(drop, CHAIN, now=0)
    assert change.incident.origin == "web" and len(tracker.active()) == 1
    # A caller that fails while its callee finishes fewer requests: the callee
    # may hang (its requests never end), so the deepest stays the origin.
    failing = [sig("api", "error"), sig("orders", "traffic")]
    assert list(origins(failing, CHAIN)) == ["orders"]


def test_one_bad_second_is_not_an_incident() -> None:
    tracker = IncidentTracker(confirm_s=2, quiet_s=30)
    assert tracker.update([sig("api")], [], now=0) == []
    assert tracker.update([], [], now=1) == []
    assert tracker.update([sig("api")], [], now=2) == []  # starts over: not 2 s in a row
    assert tracker.incidents[0].first_seen == 2


def test_an_incident_resolves_only_after_a_quiet_period_and_does_not_flap() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30)
    [opened] = tracker.update([sig("api")], [], now=0)
    assert tracker.update([], [], now=20) == []  # quiet, but not long enough
    assert tracker.update([sig("api", "latency")], [], now=25) == []  # back: the same incident
    assert tracker.update([], [], now=50) == []
    [resolved] = tracker.update([], [], now=55)
    assert resolved.what == "resolved" and resolved.incident is opened.incident
    [again] = tracker.update([sig("api")], [], now=56)
    assert again.what == "opened" and again.incident.id != opened.incident.id


def test_a_forgotten_incident_is_not_watched_any_more() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30)
    [opened] = tracker.update([sig("api")], [], now=0)
    assert tracker.update([sig("api")], [], now=5) == []  # still the same, still open
    tracker.forget(opened.incident)
    [again] = tracker.update([sig("api")], [], now=6)
    assert again.what == "opened" and again.incident.id != opened.incident.id


def test_a_quiet_operation_is_judged_over_a_longer_lane_and_only_on_a_change() -> None:
    """A request every 3 s never fills a window: its slowdown is seen over the last minute."""
    sim = Sim()

    def quiet(seconds: int, ms: float) -> list[Signal]:
        found: list[Signal] = []
        for _ in range(seconds):
            sim.clock.now += 1
            if int(sim.clock.now) % 3 == 0:
                sim.detector.observe(requests("search", 1, ms))
            found = sim.anomalous()
            if found:
                return found
        return found

    assert quiet(300, 40) == []  # five minutes of normal: never an incident
    slowed = quiet(120, 400)
    assert [(s.service, s.kind) for s in slowed] == [("search", "latency")]
    assert "a quiet operation" in slowed[0].reason and slowed[0].count >= 10


def test_a_fault_mid_window_is_seen_in_the_newest_seconds_before_it_fills_the_window() -> None:
    sim = Sim()
    sim.run(60, requests("checkout", 20, 30))
    assert sim.run(1, requests("checkout", 20, 30, errors=4)) == []  # one second: bad luck yet
    # 8 of the window's 200 requests (4%) are under the bar; 8 of the newest 60 are not.
    [signal] = sim.run(1, requests("checkout", 20, 30, errors=4))
    assert (signal.service, signal.kind) == ("checkout", "error")
    assert "newest seconds" in signal.reason
    assert (signal.count, signal.errors) == (60, 8)


def test_a_latency_hiccup_of_two_seconds_is_not_judged_on_the_newest_seconds() -> None:
    """Their p95 is a handful of samples: half the requests of two seconds at 2.3x is a hiccup."""
    sim = Sim()
    sim.run(60, requests("checkout", 20, 30))
    found = sim.run(2, requests("checkout", 10, 30), requests("checkout", 10, 70))
    for _ in range(10):
        assert found == []
        found = sim.run(1, requests("checkout", 20, 30))


@pytest.mark.parametrize("seed", range(3))
def test_the_newest_seconds_do_not_page_on_a_healthy_noisy_operation(seed: int) -> None:
    """Half an hour of 1% errors and a slow tail, in bursts as exporters send them: no signal."""
    rng = random.Random(seed)
    sim = Sim()
    for second in range(1800):
        sim.clock.now += 1
        if second % 5 == 0:  # the SDK's default: a batch every 5 s
            n = rng.randint(60, 140)
            errors = sum(rng.random() < 0.01 for _ in range(n))
            batch = requests("api", n, 30, errors=errors)
            for span in batch[: n // 20]:
                span.end_ns += int(rng.uniform(20, 60) * 1e6)
            sim.detector.observe(batch)
        if second > 60:
            assert sim.anomalous() == [], second
