"""The `sre-space` command. Thin: parse, call the core, format.

Heavy modules (chromadb, langgraph, textual, the OTel SDK) are imported inside
the commands that need them so `sre-space --help` stays fast.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from sre_space import logs
from sre_space.cli_common import JsonOpt
from sre_space.cli_common import err as _err
from sre_space.cli_common import out as _out
from sre_space.cli_common import say as _say
from sre_space.cli_memory import memory_app
from sre_space.cli_notify import notify_app
from sre_space.cli_ops import approve, deny, drill, review
from sre_space.cli_people import ack, note, resolve
from sre_space.cli_stack import down, stack_mode, up
from sre_space.cli_targets import targets_app
from sre_space.config import Settings, load
from sre_space.errors import CheckFailed, ExitCode, SreSpaceError, Unavailable, UsageError
from sre_space.localapi import mind_port as _mind_port
from sre_space.safe_text import printable, printable_lines
from sre_space.squad.policy import MODES

if TYPE_CHECKING:
    from sre_space.mind import Mind

app = typer.Typer(
    name="sre-space",
    help="Autonomous incident response on OpenTelemetry.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


# Help panels, so `--help` reads in the order a user meets the commands.
INFRA, SQUAD, CHAOS, INCIDENTS = "Infrastructure", "The squad", "Chaos and drills", "Incidents and memory"
for _command, _panel in (
    (up, INFRA),
    (down, INFRA),
    (approve, SQUAD),
    (deny, SQUAD),
    (drill, CHAOS),
    (review, INCIDENTS),
    (ack, INCIDENTS),
    (resolve, INCIDENTS),
    (note, INCIDENTS),
):
    app.command(rich_help_panel=_panel)(_command)
app.add_typer(memory_app, name="memory", rich_help_panel=INCIDENTS)
app.add_typer(targets_app, name="targets", rich_help_panel=INCIDENTS)
app.add_typer(notify_app, name="notify", rich_help_panel=INCIDENTS)


def _settings(**flags: Any) -> Settings:
    return load(**flags)


@app.callback()
def _root(
    state_url: Annotated[
        str | None,
        typer.Option(
            "--state-url",
            help="Shared state in PostgreSQL (postgresql://USER@HOST:5432/DB) for every "
            "command; else SRE_SPACE_STATE_URL, config.toml's state_url, or SQLite under the home.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Autonomous incident response on OpenTelemetry."""
    if state_url is not None:  # a flag wins over the environment and the file, as for every setting
        import os

        from sre_space.state.url import StateUrl

        StateUrl.parse(state_url)  # a bad URL is refused here, redacted, exit 2
        os.environ["SRE_SPACE_STATE_URL"] = state_url


SourceOpt = Annotated[
    str | None,
    typer.Option(help="With the Compose stack: spans from kafka (default) or otlp (Collector pushes)."),
]


def _mind_settings(source: str | None, **flags: Any) -> Settings:
    """A mind's settings: the flags, plus the Compose stack's endpoints when one runs."""
    from sre_space.infra.stack import mind_overrides

    if source not in (None, "kafka", "otlp"):
        raise UsageError(f"unknown source {source!r}; use kafka or otlp")
    if flags.get("policy") not in (None, *MODES):
        raise UsageError(f"unknown policy {flags['policy']!r}; use {', '.join(MODES)}")
    base = load(**flags)
    overrides = mind_overrides(base.home, source)
    return load(**{**overrides, **flags}) if overrides else base


# --- lab ---------------------------------------------------------------------


@app.command(rich_help_panel=INFRA)
def status(json_out: JsonOpt = False) -> None:
    """Say what is running: the lab, its services, the mind and its intake."""
    from sre_space import localapi
    from sre_space.lab.control import LabClient
    from sre_space.lab.launcher import read_lab_state
    from sre_space.paths import Paths

    settings = _settings()
    paths = Paths(settings.home)
    doc: dict[str, Any] = {
        "home": str(settings.home),
        "mode": stack_mode(settings),
        "lab": None,
        "mind": None,
    }
    state = read_lab_state(settings)
    if state is not None:
        try:
            doc["lab"] = LabClient.from_settings(settings).status()
        except SreSpaceError as exc:
            doc["lab"] = {"error": str(exc)}
    mind = _mind_port(paths)
    if mind is not None:
        try:
            doc["mind"] = localapi.get(mind, paths.mind_token, "/status")
        except SreSpaceError as exc:
            doc["mind"] = {"error": str(exc)}
    if json_out:
        _out(doc)
        return
    lab = doc["lab"]
    if lab is None:
        _say("lab: down")
    else:
        _say(f"lab: {lab.get('mode', 'embedded')} up")
        for name, svc in (lab.get("services") or {}).items():
            health = "healthy" if svc.get("healthy") else "UNHEALTHY"
            _say(f"  {name:<10} pid {svc.get('pid')}  port {svc.get('port')}  {health}")
    m = doc["mind"]
    if m is None:
        _say("mind: not running")
    elif "error" in m:
        _say(f"mind: {m['error']}")
    else:
        st = m["store"]
        _say(
            f"mind: pid {m['pid']} policy {m['policy']}  intake {st['spans_per_s']:.0f} spans/s, "
            f"{st['spans_in']} in, {st['rejected']} rejected, {st['evicted_spans']} evicted, "
            f"{st['traces_held']} traces held; active incidents: {len(m['active_incidents'])}"
        )
        lead = m.get("leadership") or {}
        if lead.get("role") not in (None, "sole"):
            held = lead.get("leader") or {}
            _say(
                f"  {lead['role']}: lease held by {held.get('holder', 'nobody')} "
                f"(epoch {held.get('epoch')}, {held.get('expires_in_s')} s left)"
                + (f"; lost: {lead['lost']}" if lead.get("lost") else "")
            )


@app.command(rich_help_panel=CHAOS)
def chaos(
    fault: Annotated[str, typer.Argument(help="A fault name, or: list, status, revert.")],
    name: Annotated[str | None, typer.Argument(help="With revert: the fault to revert.")] = None,
    target: Annotated[str | None, typer.Option(help="Service to break.")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds until it reverts itself.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE")] = None,
    all_: Annotated[bool, typer.Option("--all", help="With revert: every fault.")] = False,
    replicas: Annotated[
        str | None, typer.Option(help="Blast radius on a replicated service: one | all.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Break the lab for real: `chaos db-timeout`, `chaos list`, `chaos revert --all`."""
    from sre_space.lab.faults import BLAST, FAULTS

    if fault == "list":
        catalogue: list[dict[str, Any]] = [
            {
                "name": f.name,
                "description": f.description,
                "default_target": f.default_target,
                "targets": list(f.targets),
                "params": f.defaults,
                "replicas": f.replicas,
                "mechanism": f.mechanism,
                "expect": f.expect,
            }
            for f in FAULTS.values()
        ]
        if json_out:
            _out(catalogue)
            return
        for f in catalogue:
            shown = " ".join(f"{k}={v}" for k, v in f["params"].items()) or "-"
            targets = ", ".join(f"[{t}]" if t == f["default_target"] else t for t in f["targets"])
            print(f"{f['name']:<16} {f['description']}")
            print(f"{'':<16} targets: {targets}  params: {shown}  replicas: {f['replicas']}")
            print(f"{'':<16} how: {f['mechanism']}")
        return
    if replicas is not None and replicas not in BLAST:
        raise UsageError(f"--replicas takes one of {', '.join(BLAST)}, not {replicas!r}")
    if fault == "revert" and not all_ and name is None:
        raise UsageError("chaos revert takes a FAULT or --all")
    if fault == "revert" and name is not None and name not in FAULTS:
        raise UsageError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}")
    if fault not in ("status", "revert") and fault not in FAULTS:
        raise UsageError(f"unknown fault {fault!r}; known faults: {', '.join(FAULTS)}")
    from sre_space.lab.control import LabClient

    client = LabClient.from_settings(_settings())
    if fault == "status":
        active = client.chaos_status()
        if json_out:
            _out(active)
        else:
            print("\n".join(json.dumps(a) for a in active) or "no fault active")
        return
    if fault == "revert":
        reverted = client.revert(None if all_ else name)
        _out({"reverted": reverted}) if json_out else print(
            f"reverted: {', '.join(reverted) or 'nothing was active'}"
        )
        return
    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--param takes KEY=VALUE, got {item!r}")
        params[key] = _number(value)
    result = client.inject(
        fault, target=target, params=params, duration_s=duration, replicas=replicas
    )
    if json_out:
        _out(result)
    else:
        until = f" for {duration:.0f} s" if duration else " until reverted"
        print(f"injected {fault}{until}: {json.dumps(result)}")


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


# --- the mind ------------------------------------------------------------------


@app.command(rich_help_panel=SQUAD)
def run(
    policy: Annotated[str | None, typer.Option(help="auto | approve | dry-run")] = None,
    otlp_port: Annotated[int | None, typer.Option(help="OTLP/HTTP receiver port.")] = None,
    source: SourceOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
) -> None:
    """Run the squad headless: receive spans, detect, diagnose, fix, verify, remember."""
    from sre_space.mind import Mind

    settings = _mind_settings(source, policy=policy, otlp_http_port=otlp_port)
    with logs.to_file(settings, "run"):
        _run(Mind(settings), json_out)


def _run(mind: Mind, json_out: bool) -> None:
    """Print the mind's events on stdout until SIGINT or SIGTERM."""
    mind.start()
    stop = _stop_on_signals(mind)
    after = 0
    try:
        while not stop() and not mind.wait(0):  # a mind that lost its lease stops itself
            for event in mind.log.events(after):
                after = event.seq
                if json_out:
                    sys.stdout.write(json.dumps(event.to_json()) + "\n")
                else:
                    sys.stdout.write(event.line() + "\n")
                sys.stdout.flush()
            time.sleep(0.2)
    finally:
        mind.stop()
    if mind.lost_lease:
        raise Unavailable(f"lost the lease: {mind.lost_lease}; stopped without acting")


def _stop_on_signals(mind: Any) -> Any:
    flag = {"stop": False}

    def handler(signum: int, _frame: Any) -> None:
        flag["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return lambda: flag["stop"]


@app.command(rich_help_panel=SQUAD)
def watch(
    readonly: Annotated[bool, typer.Option(help="Observe only: take no action.")] = False,
    policy: Annotated[str | None, typer.Option(help="auto | approve | dry-run")] = None,
    source: SourceOpt = None,
) -> None:
    """The live cockpit: squad terminal, trace waterfall, incidents, memory hits (hosts the mind unless one runs)."""
    from sre_space.tui.app import run_app

    run_app(_mind_settings(source, policy=policy), readonly=readonly)


@app.command(rich_help_panel=INCIDENTS)
def incidents(
    incident_id: Annotated[str | None, typer.Argument(help="Show one incident.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """List incidents, or show one: its timeline, root cause, evidence, remediation, audit trail."""
    from sre_space import state
    from sre_space.incidents import IncidentLog

    place = state.where(_settings())  # the home's SQLite file, or the shared state_url
    if not state.exists(place):
        _out([]) if json_out else print("no incidents")
        return
    log = IncidentLog(place)
    if incident_id:
        found = log.get(incident_id)
        if found is None:
            raise UsageError(f"no incident {incident_id!r}")
        if json_out:
            _out(found.to_json())
            return
        from sre_space.incident_view import render

        print(render(found, log.events_of(found.id)))
        return
    items = log.list(limit)
    if json_out:
        _out([i.to_json() for i in items])
        return
    if not items:
        print("no incidents")
    for i in items:
        rc = i.root_cause
        rem = i.remediation
        print(
            printable(
                f"{i.id}  {i.status:<10} {rc.get('service', '?')} {rc.get('operation', '')} "
                f"[{rc.get('fault_class', '?')}]  fix: {rem.get('action', '-')} "
                f"{rem.get('params', '')} ({rem.get('source', '-')}, {rem.get('outcome', '-')})  "
                f"TTD {_secs(i.ttd_s)}  TTM {_secs(i.ttm_s)}"
                + (f"  recurs {i.recurs}" if i.recurs else "")
            )
        )


@app.command(rich_help_panel=INCIDENTS)
def analyze(
    files: Annotated[
        list[str], typer.Argument(help="Trace files (OTLP JSON/protobuf, Jaeger JSON, gzip ok; - stdin).")
    ],
    baseline: Annotated[
        list[str] | None, typer.Option(help="Traces from before the trouble (repeatable).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="How many candidates.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Find the root cause in recorded traces: the Brain, offline."""
    from sre_space.rca.offline import analyze as run_analysis

    result = run_analysis(
        files, baseline or [], top=top, latency_threshold_ms=_settings().latency_threshold_ms
    )
    _out(result.to_json()) if json_out else print(printable_lines(result.render()))


@app.command(rich_help_panel=INCIDENTS)
def replay(
    files: Annotated[
        list[str],
        typer.Argument(help="Recordings in playing order: fault-free first, the incident after."),
    ],
    speed: Annotated[
        float | None,
        typer.Option(help="Recorded seconds per second (default: as fast as the mind keeps up)."),
    ] = None,
    policy: Annotated[str, typer.Option(help="dry-run | approve (a replay never acts)")] = "dry-run",
    expect: Annotated[
        Path | None, typer.Option(help="Expectations to check (a drill file's expect: block).")
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here (with --expect).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds of wall time before giving up.")] = 900.0,
    json_out: JsonOpt = False,
) -> None:
    """Play recorded traces through the whole squad: what it would have done (acts on nothing)."""
    from sre_space import replay as rp

    rp.check_policy(policy)
    title, expected = rp.load_expectations(expect) if expect else ("", {})
    if junit is not None and not expected:
        raise UsageError("--junit writes one test case per expectation: give --expect FILE")

    def show(event: Any) -> None:
        sys.stdout.write(event.line() + "\n")
        sys.stdout.flush()

    settings = _settings()
    with logs.to_file(settings, "replay"):
        result = rp.replay(
            settings,
            files,
            speed=speed,
            policy=policy,
            timeout_s=timeout,
            on_event=None if json_out else show,
        )
    steps = rp.judge(result, expected) if expected else []
    if junit is not None:
        try:
            junit.write_text(rp.junit(title, steps, result.wall_s))
        except OSError as exc:
            raise UsageError(f"cannot write {junit}: {exc.strerror or exc}") from None
    if json_out:
        doc = result.to_json()
        if expected:
            doc["expectations"] = steps
        _out(doc)
    else:
        print(printable_lines("\n".join(["---", *result.summary()])))
        for step in steps:
            detail = {k: v for k, v in step.items() if k not in ("step", "ok")}
            mark = "ok  " if step["ok"] else "FAIL"
            print(printable(f"{mark} {step['step']:<14} {json.dumps(detail, default=str)}"))
    failed = [s["step"] for s in steps if not s["ok"]]
    if failed:
        raise CheckFailed(f"replay: expectation(s) not met: {', '.join(failed)}")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def main() -> NoReturn:
    """Entry point: typer handles usage errors (exit 2); ours become one line and a code."""
    logs.to_stderr()
    try:
        app(prog_name="sre-space")
    except SreSpaceError as exc:
        _err(f"sre-space: {exc}")
        sys.exit(exc.exit_code)
    except ValidationError as exc:  # a setting from a flag, the environment or the file
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        # Echo what was given, unless it may carry a credential (a URL, a token).
        secret = any(word in where for word in ("url", "token", "secret", "password", "broker"))
        given = "" if secret else f" (got {first.get('input')!r})"
        _err(f"sre-space: bad setting {where}: {first['msg']}{given}")
        sys.exit(ExitCode.USAGE)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):
            raise
        # The shared state database failed mid-command (its connection closed, a
        # statement refused): one line, without the URL (the driver's message has none).
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _err(f"sre-space: the state database: {line}")
        sys.exit(ExitCode.UNAVAILABLE)
    sys.exit(ExitCode.OK)
