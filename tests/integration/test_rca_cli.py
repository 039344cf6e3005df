"""`sre-space analyze`: the Brain offline, on trace files written by the test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from rca_synth import Fault, to_otlp_json, window
from sre_space.telemetry.model import Span

from helpers import sre

LATER = 1.7e12 + 60_000
SHOP = {"frontend", "catalog", "checkout", "payments", "inventory"}


def write(path: Path, traces: list[list[Span]]) -> str:
    body = json.dumps(to_otlp_json(traces)).encode()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return str(path)


def test_analyze_json_names_the_origin_of_the_errors(tmp_path: Path) -> None:
    base = write(tmp_path / "baseline.otlp.json", window(120, seed=1))
    inc = write(
        tmp_path / "incident.otlp.json.gz",
        window(120, Fault(error="payments"), seed=2, start_ms=LATER),
    )
    proc = sre(tmp_path, "analyze", inc, "--baseline", base, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert list(doc) == ["candidates"]
    top = doc["candidates"][0]
    assert set(top) == {"service", "operation", "score", "fault_class", "confidence", "evidence"}
    assert top["confidence"] >= 0.5
    # every service that took part, best first
    assert {c["service"] for c in doc["candidates"]} == SHOP
    assert (top["service"], top["operation"], top["fault_class"]) == ("payments", "Charge", "error")
    assert top["evidence"]["exemplar_trace_ids"]


def test_analyze_finds_the_change_inside_one_file_and_prints_for_a_terminal(tmp_path: Path) -> None:
    traces = window(120, seed=1) + window(
        120, Fault(gap_to={"inventory": 200}), seed=2, start_ms=1.7e12 + 12_500
    )
    proc = sre(tmp_path, "analyze", write(tmp_path / "both.json", traces))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "against its own earlier part" in lines[0]
    assert lines[1].startswith("most likely root cause: inventory (latency), confidence")
    assert lines[3].startswith("1. inventory")
    assert "wait on inventory" in proc.stdout


def test_analyze_of_a_healthy_window_names_no_one(tmp_path: Path) -> None:
    base = write(tmp_path / "a.json", window(100, seed=1))
    healthy = write(tmp_path / "b.json", window(100, seed=2, start_ms=LATER))
    proc = sre(tmp_path, "analyze", healthy, "--baseline", base, "--json")
    assert proc.returncode == 0, proc.stderr
    candidates = json.loads(proc.stdout)["candidates"]
    # still a ranking of everyone, with no evidence against anyone and a low confidence
    assert {c["service"] for c in candidates} == SHOP
    assert all(c["evidence"]["explained_traces"] == 0 for c in candidates)
    assert candidates[0]["confidence"] < 0.25
    text = sre(tmp_path, "analyze", healthy, "--baseline", base).stdout
    assert "low confidence: nothing clearly stands out" in text


def test_analyze_of_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("this is not telemetry")
    for path in (str(tmp_path / "junk.json"), str(tmp_path / "missing.json")):
        proc = sre(tmp_path, "analyze", path)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"sre-space: cannot read {path}: ")
        assert proc.stderr.count("\n") == 1 and not proc.stdout
