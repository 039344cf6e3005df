"""Sliding-window signals per service and operation, fed by the trace store.

Requests are counted at their entry span: SERVER and CONSUMER spans (and
spans with no kind, from simple exporters), and INTERNAL spans that are a
trace's root or are learned to be entered from another service (many real
instrumentations mark every span INTERNAL). A CLIENT span repeats its callee's
outcome and would double-count a cascade. Buckets are one second of *arrival*
time, so late or skewed clocks in the telemetry cannot hide a burst of errors.

Each operation is judged on the last ``window_s`` seconds by:

- the static rules (:mod:`~sre_space.detect.rules`): the share of ERROR
  requests, and of requests over the latency limit, each beyond the learned
  share by more than the threshold (a service that always fails 2% of its
  calls is not an incident at 3%; one that never failed is at 6%);
- learned baselines: the window's p95 latency at least doubled against the
  p95 of the operation's own history, with clearly more than the usual 5% of
  requests over that p95 (so a service that is always slow is not an
  incident, one that doubled is, and two unlucky requests are not); traffic that dropped well below
  its rate in the minute before the window (traffic ebbs and swells over a
  day) for half a window (exporters send spans in batches), or
  at once to nothing (the operation vanished); an operation, or a
  call from one service to another, that appears after the warm-up.

History older than the window, up to ``baseline_s``, is the baseline; seconds
in which the operation was anomalous are never learned as normal (unless it
has been so since it was first seen: then that is how it always is, and the
static rules speak for it only until its baseline is learned; a share of
slow requests already there when the detector starts is learned before it is
judged). An operation with too few requests in the window to judge (a quiet
system: a request every few seconds) has its error, slow and latency rates
judged on up to ``QUIET_LANE_S`` seconds instead, with the same bars (and
its seconds are learned only once they leave that lane). An
operation stays anomalous until it is clearly back (hysteresis: looser bars
to stay than to enter), so a signal at the edge of a threshold does not flap.

Held elsewhere in the package: the per-operation state and ``Signal``
(``detect.operation``), the odds (``detect.stats``) and the call edges
(``detect.edges``).

Over 300 lines on purpose: ``WindowDetector`` judges one operation (``_judge`` to
``_settling``) on state it holds under its lock, and that judgement reads best whole.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

from sre_space.detect.edges import CallEdges
from sre_space.detect.operation import Signal, _Bucket, _many_over, _Op
from sre_space.detect.rules import Rules
from sre_space.detect.stats import LATENCY_CHANCE, LATENCY_CHANCE_EXIT, beyond_chance, percentile
from sre_space.telemetry.batch import SpanBatch, row_of
from sre_space.telemetry.model import Span, SpanKind

__all__ = ["REQUEST_KINDS", "Signal", "WindowDetector", "beyond_chance", "percentile"]

REQUEST_KINDS = {SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.UNSPECIFIED}
_REQUEST_KIND_VALUES = (int(SpanKind.SERVER), int(SpanKind.CONSUMER), int(SpanKind.UNSPECIFIED))
_INTERNAL = int(SpanKind.INTERNAL)

LATENCY_RATIO = 2.0  # window p95 at least this many times the baseline p95 ...
LATENCY_MIN_DELTA_MS = 5.0  # ... and this much slower in absolute terms
LATENCY_RATIO_EXIT = 1.5  # an anomalous operation stays so until below this ratio
# ... and more of the window's requests over the baseline p95 than its normal 5%
# could be by chance (LATENCY_CHANCE, in detect.stats with the other odds).
EXIT_FACTOR = 0.5  # rate thresholds to stay anomalous: this share of the entry threshold
TRAFFIC_DROP = 0.5  # fewer requests than this share of the expected count ...
TRAFFIC_Z = 4.0  # ... and fewer by this many Poisson sigmas
TRAFFIC_RECOVERED = 0.75  # a traffic drop ends above this share of the expected count
# A traffic drop is judged against the recent rate before the window, not the
# whole baseline: traffic swells and ebbs over a day, and a quiet hour measured
# against the busy day's average would read as a drop. The lower rate of the
# last half minute and the last minute is the one expected: a minute lags an
# ebb (it overstates a falling rate), a shorter span is noisier, and overstating
# what is normal is what turns an ebb into a false drop.
TRAFFIC_RECENT_S = (30.0, 60.0)  # shortest first
# Traffic that fell, not to nothing, must stay low for this share of the window:
# exporters send spans in batches (the SDK's default is every 5 s), so a window
# can catch one batch fewer, or a stalled exporter catch up, without any fault.
TRAFFIC_HOLD = 0.5
WINDOW_SAMPLES = 512  # latencies kept per operation per second of the window
# A quiet operation (fewer requests in the window than the fewest judged) is
# judged on up to this many seconds instead: a request every few seconds never
# fills a window, and a fault there would never be seen. Its rates and latency
# only; traffic keeps the window (see the module docstring).
QUIET_LANE_S = 60.0
# A fault that starts mid-window is diluted by the healthy seconds before it:
# one request in six failing from now on takes about three seconds to reach 5%
# of a ten-second window. The newest seconds are judged too, on the same bars
# and odds, whenever they alone hold enough requests to judge: their shares of
# failed and too-slow requests only. Their p95 is a handful of samples, and a
# host's hiccup of a second or two moves it (a fault-free lab run paged on one
# operation's p95 at 2.4x over 3 s when it was judged there too).
RECENT_LANE_S = 3


class WindowDetector:
    """Spans in (``observe``), signals out. Over 300 lines on purpose: the intake's hot
    path and the judging share the per-operation buckets under one lock."""

    def __init__(
        self,
        window_s: float,
        latency_threshold_ms: float,
        *,
        rules: Rules | None = None,
        baseline_s: float = 600.0,
        warmup_s: float | None = None,
        error_rate: float = 0.05,
        min_requests: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self.error_rate = error_rate  # defaults for signals(); anomalous() passes its own
        self.min_requests = min_requests
        self.latency_threshold_ms = latency_threshold_ms
        self.rules = rules or Rules(latency_ms=latency_threshold_ms)
        self.baseline_s = baseline_s
        # New operations and calls count as structural change only after this.
        self.warmup_s = 3 * window_s if warmup_s is None else warmup_s
        self._clock = clock
        self._ops: dict[tuple[str, str], _Op] = {}
        self._active: set[tuple[tuple[str, str], str]] = set()
        self._lock = threading.Lock()
        self._started = clock()
        self._window_from = self._started  # the window never reaches before a reset
        # Call edges and entry operations, learned from a sample of whole traces.
        self._calls = CallEdges()
        self._entries = self._calls.entries  # the same set, read on the hot path

    # --- intake (the store's listener: the hot path) ------------------------------

    def observe(self, spans: Sequence[Span]) -> None:
        # A batch's rows are read as they are (no span objects are built for
        # this); spans given as objects are read through the same rows.
        rows = spans.rows if isinstance(spans, SpanBatch) else [row_of(s) for s in spans]
        now = self._clock()
        second = int(now)
        rules = self.rules
        ops = self._ops
        entries = self._entries
        calls = self._calls
        request_kinds = _REQUEST_KIND_VALUES
        with self._lock:
            calls.roll(second)
            # The operation ``op`` and its bucket ``b`` are of: spans of one
            # operation often come together, so most spans skip the lookup.
            op_service: str | None = None
            op_name: str | None = None
            op = _Op(second, 0.0, False)
            b = _Bucket(second)
            for tid, sid, parent, service, name, start, end, kind, error, _, _, _, _ in rows:
                if tid[-1] == "0":  # one trace in 16 is followed span by span
                    calls.track(sid, parent, (service, name), now)
                if kind not in request_kinds and not (
                    kind == _INTERNAL and (not parent or (service, name) in entries)
                ):
                    continue
                if service is not op_service or name is not op_name:
                    key = (service, name)
                    op = ops.get(key)  # type: ignore[assignment]
                    if op is None:
                        op = ops[key] = _Op(
                            second, rules.latency_for(service), rules.errors_for(service)
                        )
                    buckets = op.window
                    if not buckets or buckets[-1].second != second:
                        buckets.append(_Bucket(second))
                    b = buckets[-1]
                    op_service, op_name = service, name
                b.count += 1
                d = end - start
                duration = (d if d > 0 else 0) / 1e6  # Span.duration_ms
                if error and op.count_errors:
                    b.errors += 1
                if duration > op.latency_limit_ms:
                    b.slow += 1
                if len(b.latencies) < WINDOW_SAMPLES:
                    b.latencies.append(duration)

    # --- state ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the window, e.g. once an incident is mitigated, so stale errors don't reopen it.

        What was learned before the window stays learned; the window's seconds
        (the incident) are dropped, never learned as normal.
        """
        with self._lock:
            for op in self._ops.values():
                op.window.clear()
                op.past.clear()
            self._active.clear()
            self._window_from = self._clock()

    def edges(self) -> set[tuple[str, str]]:
        """Calls from one service to another seen so far, as (caller, callee)."""
        with self._lock:
            return set(self._calls.edges)

    def _age(self, op: _Op, now: float) -> None:
        """Move seconds that left the window into the operation's baseline."""
        cutoff = now - self.window_s
        base = op.baseline
        while op.window and op.window[0].second <= cutoff:
            op.past.append(op.window.popleft())
        # A quiet operation's seconds are learned only once they leave its
        # lane: judged there first, a slowdown is not normal before it is seen.
        busy = sum(b.count for b in op.window) >= self.min_requests
        while op.past and (busy or op.past[0].second <= now - QUIET_LANE_S):
            b = op.past.popleft()
            if not b.tainted:
                base.learn(b)
                op.history.append((b.second, b.count, b.errors, b.slow))
        horizon = now - self.window_s - self.baseline_s
        while op.history and op.history[0][0] < horizon:
            _, n, err, slow = op.history.popleft()
            base.requests -= n
            base.errors -= err
            base.slow -= slow
        start = max(op.first_second, self._started, horizon)
        base.seconds = max(0.0, cutoff - start)

    # --- judgement ----------------------------------------------------------------------

    def signals(
        self, error_rate: float | None = None, min_requests: int | None = None
    ) -> list[Signal]:
        """Every operation seen over the window, judged (``kind`` empty when normal).

        ``error_rate``: the share of failed (or too slow) requests beyond the
        learned share that makes an operation anomalous; ``min_requests``: the
        fewest requests in the window to judge its rates on.
        """
        limits = (
            self.error_rate if error_rate is None else error_rate,
            self.min_requests if min_requests is None else min_requests,
        )
        now = self._clock()
        out: list[Signal] = []
        with self._lock:
            for key, op in self._ops.items():
                self._age(op, now)
                out.append(self._judge(key, op, now, limits))
            out.extend(self._calls.new_edges(now, self._started, self.warmup_s, self.window_s))
        return out

    def _judge(
        self, key: tuple[str, str], op: _Op, now: float, limits: tuple[float, int]
    ) -> Signal:
        service, operation = key
        buckets = op.window
        count = sum(b.count for b in buckets)
        errors = sum(b.errors for b in buckets)
        slow = sum(b.slow for b in buckets)
        latencies = [x for b in buckets for x in b.latencies]
        p95 = percentile(latencies, 0.95)
        bad = [b.second for b in buckets if b.errors or b.slow]
        base = op.baseline
        base.quantiles()
        ready = base.ready
        signal = Signal(
            service,
            operation,
            count,
            errors,
            slow,
            p95,
            float(bad[0]) if bad else None,
            baseline_p95_ms=base.p95_ms if ready else None,
            baseline_error_rate=round(base.error_rate, 4) if ready else None,
        )
        kind, reason, expected = self._verdict(key, op, signal, now, *limits)
        if not kind and count < limits[1] and op.past:
            lane = deque([*op.past, *buckets])
            signal, kind, reason = self._lane(
                key, op, signal, lane, limits, "a quiet operation", latency=True
            )
            if kind:
                buckets = lane
        elif not kind and buckets and buckets[0].second <= now - RECENT_LANE_S:
            lane = deque(b for b in buckets if b.second > now - RECENT_LANE_S)
            signal, kind, reason = self._lane(
                key, op, signal, lane, limits, "newest seconds", latency=False
            )
            if kind:
                buckets = lane
        for k in ("error", "slow", "latency", "traffic", "structure"):
            if k != kind:
                self._active.discard((key, k))
        if not kind:
            op.ever_normal = True
        else:
            self._active.add((key, kind))
            count, errors, slow, p95 = signal.count, signal.errors, signal.slow, signal.p95_ms
            if op.ever_normal:
                # A change from what it was: not to be learned as normal. (An
                # operation anomalous since first seen is how it always is, as
                # far as anyone here knows; it is learned.)
                for b in buckets:
                    b.tainted = True
            first = signal.first_bad_at
            if first is None and buckets:
                first = float(buckets[0].second)
            return Signal(
                service,
                operation,
                count,
                errors,
                slow,
                p95,
                first,
                kind,
                reason,
                signal.baseline_p95_ms,
                signal.baseline_error_rate,
                expected,
            )
        return signal

    def _lane(
        self,
        key: tuple[str, str],
        op: _Op,
        window: Signal,
        lane: deque[_Bucket],
        limits: tuple[float, int],
        what: str,
        *,
        latency: bool,
    ) -> tuple[Signal, str, str]:
        """The operation judged on other seconds than the window's: (signal, kind, reason).

        Only its rates (and its latency, with ``latency``): the traffic it gets
        is the window's to judge.
        """
        count = sum(b.count for b in lane)
        if count < limits[1]:
            return window, "", ""
        latencies = [x for b in lane for x in b.latencies]
        bad = [b.second for b in lane if b.errors or b.slow]
        judged = replace(
            window,
            count=count,
            errors=sum(b.errors for b in lane),
            slow=sum(b.slow for b in lane),
            p95_ms=percentile(latencies, 0.95),
            first_bad_at=float(bad[0]) if bad else None,
        )
        kind, reason = self._rates(key, op, judged, lane, *limits, latency=latency)
        if not kind:
            return window, "", ""
        span = lane[-1].second - lane[0].second + 1
        return judged, kind, f"{reason} over the last {span} s ({what})"

    def _verdict(
        self,
        key: tuple[str, str],
        op: _Op,
        s: Signal,
        now: float,
        thr: float,
        min_requests: int,
    ) -> tuple[str, str, float | None]:
        """(kind, reason, expected count) of the strongest anomaly, or ("", "", None)."""
        kind, reason = self._rates(key, op, s, op.window, thr, min_requests)
        if kind:
            return kind, reason, None
        return self._traffic_or_structure(key, op, s, now, min_requests)

    def _rates(
        self,
        key: tuple[str, str],
        op: _Op,
        s: Signal,
        buckets: deque[_Bucket],
        thr: float,
        min_requests: int,
        *,
        latency: bool = True,
    ) -> tuple[str, str]:
        """(kind, reason) of errors, slow requests or latency beyond normal, or ("", "")."""

        def bar(kind: str, enter: float) -> float:
            return enter * EXIT_FACTOR if (key, kind) in self._active else enter

        base = op.baseline
        if s.count >= min_requests:
            base_err = base.error_rate if base.ready else 0.0
            if s.error_rate - base_err > bar("error", thr) and beyond_chance(
                s.errors, s.count, base_err, (key, "error") in self._active
            ):
                return "error", f"{s.error_rate:.0%} errors (normal {base_err:.0%})"
            base_slow = base.slow_rate if base.ready else 0.0
            judged = not self._settling(op)
            if (
                judged
                and s.slow_rate - base_slow > bar("slow", thr)
                and beyond_chance(s.slow, s.count, base_slow, (key, "slow") in self._active)
            ):
                limit = self.rules.latency_for(key[0])
                return "slow", f"{s.slow_rate:.0%} over {limit:.0f} ms (normal {base_slow:.0%})"
            if latency and base.ready and base.p95_ms > 0:
                ratio = s.p95_ms / base.p95_ms
                active = (key, "latency") in self._active
                enough = LATENCY_RATIO_EXIT if active else LATENCY_RATIO
                if (
                    ratio >= enough
                    and s.p95_ms - base.p95_ms >= LATENCY_MIN_DELTA_MS
                    and _many_over(
                        buckets, base.p95_ms, LATENCY_CHANCE_EXIT if active else LATENCY_CHANCE
                    )
                ):
                    return (
                        "latency",
                        f"p95 {s.p95_ms:.0f} ms, {ratio:.1f}x its normal {base.p95_ms:.0f} ms",
                    )
        return "", ""

    def _traffic_or_structure(
        self, key: tuple[str, str], op: _Op, s: Signal, now: float, min_requests: int
    ) -> tuple[str, str, float | None]:
        """(kind, reason, expected count) of traffic that fell or of a new operation."""
        base = op.baseline
        if base.ready and base.seconds >= self.window_s:
            elapsed = min(self.window_s, now - self._window_from)
            rate, seen = self._recent_rate(op, now)
            expected = rate * elapsed
            if elapsed >= self.window_s / 2 and expected >= 2 * min_requests:
                active = (key, "traffic") in self._active or (key, "structure") in self._active
                # Once low, only clearly back ends it: for the hold as for the signal.
                held = active or op.low_since is not None
                low = s.count < (TRAFFIC_RECOVERED if held else TRAFFIC_DROP) * expected
                # Both counts are Poisson: the expected one is as uncertain as its
                # few seconds of history make it, not known exactly.
                sigma = math.sqrt(expected + expected * expected / max(seen, 1))
                if low and (held or expected - s.count >= TRAFFIC_Z * sigma):
                    if s.count == 0:
                        return "structure", f"vanished (normally {expected:.0f} requests)", expected
                    op.low_since = op.low_since if op.low_since is not None else now
                    if active or now - op.low_since >= TRAFFIC_HOLD * self.window_s:
                        return (
                            "traffic",
                            f"{s.count} requests, normally {expected:.0f}",
                            expected,
                        )
                    return "", "", None
        op.low_since = None
        warm = now - self._started >= self.warmup_s
        new = self._started + 1 < op.first_second and op.first_second >= now - self.window_s
        if warm and new and s.count >= min_requests:
            return "structure", "a new operation", None
        return "", "", None

    def _recent_rate(self, op: _Op, now: float) -> tuple[float, int]:
        """(requests per second, requests seen) over the slowest of ``TRAFFIC_RECENT_S``.

        Only learned history counts: the seconds before the window.
        """
        before = now - self.window_s
        counts = [0] * len(TRAFFIC_RECENT_S)
        for second, count, _, _ in reversed(op.history):  # one walk, newest first
            age = before - second
            if age >= TRAFFIC_RECENT_S[-1]:
                break
            for i, span in enumerate(TRAFFIC_RECENT_S):
                if age < span:
                    counts[i] += count
        known = op.baseline.seconds
        if known <= 0:
            return 0.0, 0
        return min(
            (n / min(span, known), n) for span, n in zip(TRAFFIC_RECENT_S, counts, strict=True)
        )

    def _settling(self, op: _Op) -> bool:
        """Whether an operation's latency is still being learned, not judged.

        A share of slow requests is only a change against what the operation
        usually does: one already there when the detector started (a search
        whose tail is always over the limit) is learned first, until its
        baseline is ready, rather than reported as an incident on every cold
        start. Errors are judged at once; an operation that first appears
        later is judged at once too (nothing says its slowness is usual).
        """
        return not op.baseline.ready and op.first_second < self._started + self.warmup_s

    def anomalous(self, error_rate: float, min_requests: int) -> list[Signal]:
        """Signals over the static rules or the learned baselines (see the module docstring)."""
        return [s for s in self.signals(error_rate, min_requests) if s.kind]
