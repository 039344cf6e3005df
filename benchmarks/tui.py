"""The cockpit's speed: start-up, and drawing a 10,000-span waterfall.

Prints, in one run:

1. ``import``: seconds to import the TUI in a fresh interpreter (what
   ``sre-space watch`` pays before anything shows);
2. ``start-up``: seconds from constructing the app to its first paint
   (``run_test`` entered and one refresh done), then to the incidents and the
   selected incident's trace on screen (the first poll of a real incident log,
   the trace laid out in a worker);
3. ``layout``: seconds to build the waterfall's tree, critical path and rows
   for 10,000 spans (done off the UI thread), and to fold all / unfold all;
4. ``frame``: milliseconds of ``render_line`` over one screenful of the
   10,000-span waterfall, and over a full scroll from top to bottom (every
   row drawn once, a screen at a time), the same after sorting by latency;
5. ``keypress``: milliseconds from a page-down key to the next idle screen,
   through Textual (median of many), beside an unbound key's (the Pilot's
   own cost) for comparison;
6. ``idle CPU``: the share of one core the app uses over 5 s with nothing to
   do (it still polls the incident log and the mind).

Usage: ``python benchmarks/tui.py [--spans 10000] [--size 200x60] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.telemetry.model import Span, SpanKind
from sre_space.telemetry.store import TraceStore

SERVICES = ["frontend", "checkout", "payments", "inventory", "db", "cache", "queue"]
TRACE = "b16b16b16b16b16b16b16b16b16b16b1"


IDLE_S = 5.0  # seconds of idle the CPU is measured over

def big_trace(n: int) -> list[Span]:
    """A tree of ``n`` spans, ten children each, spread over a second; one in 97 failed."""
    t0 = 1_767_225_600 * 10**9
    spans = [Span(TRACE, f"{0:016x}", None, "frontend", "GET /batch", t0, t0 + 10**9)]
    for i in range(1, n):
        start = t0 + (i % 1000) * 990_000
        spans.append(
            Span(
                TRACE,
                f"{i:016x}",
                f"{(i - 1) // 10:016x}",
                SERVICES[i % len(SERVICES)],
                f"operation {i}",
                start,
                start + 800_000 + (i % 13) * 10_000,
                SpanKind.CLIENT,
                error=i % 97 == 0,
            )
        )
    return spans


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import sre_space.tui.app; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


async def measure(spans: int, size: tuple[int, int]) -> dict[str, Any]:
    from sre_space.tui.app import SreSpaceApp
    from sre_space.tui.waterfall_model import WaterfallView
    from sre_space.tui.widgets import IncidentTable, Waterfall

    results: dict[str, Any] = {"spans": spans, "size": f"{size[0]}x{size[1]}"}
    trace = big_trace(spans)
    store = TraceStore(max_spans=max(200_000, spans))
    store.add(trace)

    started = time.perf_counter()
    view = WaterfallView(trace)
    results["layout_s"] = time.perf_counter() - started
    started = time.perf_counter()
    view.collapse_all()
    view.expand_all()
    results["fold_all_unfold_all_s"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        log = IncidentLog(Paths(Path(home)).ensure().incidents_db)
        log.save(
            Incident(
                id="INC-20260101-0001",
                status="mitigating",
                detected_at=time.time(),
                root_cause={"service": "checkout", "evidence": {"exemplar_trace_ids": [TRACE]}},
            )
        )
        log.close()

        started = time.perf_counter()
        app = SreSpaceApp(settings, readonly=True, span_source=store.trace)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            results["first_paint_s"] = time.perf_counter() - started
            table, wf = app.query_one(IncidentTable), app.query_one(Waterfall)
            while table.row_count == 0:
                await pilot.pause(0.005)
            results["incidents_shown_s"] = time.perf_counter() - started
            while wf.trace_id != TRACE:
                await pilot.pause(0.005)
            await pilot.pause()
            results["trace_shown_s"] = time.perf_counter() - started

            wf.focus()
            await pilot.pause()
            height = wf.size.height
            rows = len(wf.view.rows)

            def draw_screen() -> None:
                for y in range(height):
                    wf.render_line(y)

            def full_scroll() -> int:
                screens = 0
                for top in range(0, rows, height - 1):
                    wf.scroll_to(y=top, animate=False)
                    wf.scroll_y = top  # render_line reads it; no waiting for a refresh
                    draw_screen()
                    screens += 1
                return screens

            samples = []
            for _ in range(20):
                t = time.perf_counter()
                draw_screen()
                samples.append(time.perf_counter() - t)
            results["screen_lines"] = height
            results["frame_ms_median"] = statistics.median(samples) * 1e3
            t = time.perf_counter()
            screens = full_scroll()
            results["full_scroll_screens"] = screens
            results["full_scroll_ms"] = (time.perf_counter() - t) * 1e3
            wf.cycle_sort()
            t = time.perf_counter()
            full_scroll()
            results["full_scroll_by_latency_ms"] = (time.perf_counter() - t) * 1e3
            wf.cycle_sort()

            wf.scroll_to(y=0, animate=False)
            await pilot.pause()
            presses = []
            for _ in range(30):
                t = time.perf_counter()
                await pilot.press("pagedown")
                presses.append(time.perf_counter() - t)
            results["keypress_ms_median"] = statistics.median(presses) * 1e3
            idle = []
            for _ in range(30):  # a key nothing is bound to: the Pilot's own overhead
                t = time.perf_counter()
                await pilot.press("f12")
                idle.append(time.perf_counter() - t)
            results["noop_keypress_ms_median"] = statistics.median(idle) * 1e3
            # CPU while nothing happens: the app polls its sources, nothing else.
            cpu, wall = time.process_time(), time.perf_counter()
            await pilot.pause(IDLE_S)
            results["idle_cpu_pct"] = (
                100 * (time.process_time() - cpu) / (time.perf_counter() - wall)
            )
            await pilot.press("q")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--size", default="200x60", help="terminal WIDTHxHEIGHT")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    results = {"import_s": import_seconds()}
    results.update(asyncio.run(measure(args.spans, (width, height))))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    r = results
    print(f"sre-space watch, {r['spans']} spans, terminal {r['size']}")
    print(f"  import          {r['import_s']:.2f} s  (sre_space.tui.app, fresh interpreter)")
    print(f"  first paint     {r['first_paint_s']:.2f} s  (app constructed -> first refresh)")
    print(f"  incidents shown {r['incidents_shown_s']:.2f} s  (first poll of the incident log)")
    print(
        f"  trace shown     {r['trace_shown_s']:.2f} s  ({r['spans']} spans laid out in a worker)"
    )
    print(f"  layout          {r['layout_s'] * 1e3:.0f} ms  (tree, critical path, rows)")
    print(f"  fold/unfold all {r['fold_all_unfold_all_s'] * 1e3:.0f} ms")
    print(
        f"  frame           {r['frame_ms_median']:.2f} ms  (render_line x {r['screen_lines']} lines)"
    )
    print(
        f"  full scroll     {r['full_scroll_ms']:.0f} ms  ({r['full_scroll_screens']} screens,"
        f" {r['full_scroll_ms'] / r['full_scroll_screens']:.2f} ms each)"
    )
    print(f"  ... by latency  {r['full_scroll_by_latency_ms']:.0f} ms")
    print(f"  keypress        {r['keypress_ms_median']:.1f} ms  (page down -> idle, median of 30)")
    print(f"  ... unbound key {r['noop_keypress_ms_median']:.1f} ms  (the Pilot's own cost)")
    print(f"  idle CPU        {r['idle_cpu_pct']:.1f} %  of one core ({IDLE_S:.0f} s with nothing to do)")


if __name__ == "__main__":
    main()
