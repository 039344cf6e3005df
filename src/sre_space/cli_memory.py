"""`sre-space memory ...`: the squad's memory of past incidents.

Reading commands ask a running mind over its loopback API (it owns the
embedded store) and otherwise open the store read-only. Writing commands
(``forget``, ``import``) refuse while a mind runs on the same home: it is the
only writer.

Exit codes: 0 ok; 2 usage (unknown id, bad lines in an import: the good ones
are kept); 3 memory unavailable (a mind is running and the command writes,
the store is locked by another process, the Chroma server is down).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sre_space.cli_common import JsonOpt, out, say
from sre_space.config import Settings, load
from sre_space.errors import Unavailable, UsageError
from sre_space.localapi import mind_port
from sre_space.safe_text import NAME_LIMIT, printable

if TYPE_CHECKING:
    from sre_space.memory.store import MemoryStore

memory_app = typer.Typer(help="Query the squad's memory of past incidents.", no_args_is_help=True)

IMPORT_CHUNK = 500
MAX_LISTED_ERRORS = 5


# --- where memory is read and written ----------------------------------------------


def _read(route: str, params: dict[str, Any], local: Callable[[MemoryStore], Any]) -> Any:
    """Ask the running mind when there is one (embedded store), else open it read-only."""
    from sre_space.paths import Paths

    settings = load()
    paths = Paths(settings.home)
    port = mind_port(paths)
    if port is not None and not settings.chroma_url:
        return _ask_mind(port, paths.mind_token, route, params)
    from sre_space.memory.store import MemoryStore

    try:
        store = MemoryStore(settings, read_only=True)
    except Unavailable:
        # A mind may have taken the store between the look and the open: ask it.
        port = mind_port(paths)
        if port is None or settings.chroma_url:
            raise
        return _ask_mind(port, paths.mind_token, route, params)
    with store:
        return local(store)


def _ask_mind(port: int, token: Path, route: str, params: dict[str, Any]) -> Any:
    from sre_space import localapi

    try:
        return localapi.get(port, token, route, params)
    except Unavailable as exc:
        if "HTTP Error 404" in str(exc):
            raise Unavailable(
                f"the running mind (API port {port}) does not serve {route}; "
                f"stop it to read memory directly"
            ) from None
        raise


def _writer(settings: Settings) -> MemoryStore:
    from sre_space.memory.store import MemoryStore
    from sre_space.paths import Paths

    port = mind_port(Paths(settings.home))
    if port is not None:
        raise Unavailable(
            f"a mind is running on {settings.home} (API port {port}) and is the only writer "
            f"of memory; stop it first"
        )
    return MemoryStore(settings)


# --- formatting -------------------------------------------------------------------------


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(ts))) if ts else "-"


def _fix(rem: dict[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in (rem.get("params") or {}).items())
    return " ".join(str(p) for p in (rem.get("action", "?"), rem.get("service", ""), params) if p)


def _provenance(doc: dict[str, Any]) -> str:
    """How far an entry is trusted, in words (empty for one made here)."""
    if not doc.get("imported"):
        return ""
    return "imported, trusted" if doc.get("trusted") else "imported, not verified here"


def _table(rows: list[list[str]]) -> None:
    """Columns of cells from memory (outside text): each escaped and capped before measuring."""
    rows = [[printable(c, NAME_LIMIT) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), None)


# --- commands ---------------------------------------------------------------------------


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What happened, in your words.")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many hits.")] = 3,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    signature: Annotated[
        str | None,
        typer.Option(help="Rank by this incident signature too (service|operation|fault|type)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search memory: similar past incidents, their fix, whether it worked, and why they rank."""
    params = {
        "q": query,
        "k": k,
        **({"service": service} if service else {}),
        **({"signature": signature} if signature else {}),
    }
    hits: list[dict[str, Any]] = _read(
        "/memory/search",
        params,
        lambda s: [h.to_json() for h in s.search(query, k=k, service=service, signature=signature)],
    )
    if json_out:
        out(hits)
        return
    if not hits:
        say("no memories match" if service else "no memories yet")
    for n, h in enumerate(hits, 1):
        where = f"{h['service']} {h.get('operation', '')}".strip()
        if h.get("fault_class"):
            where += f" ({h['fault_class']})"
        confidence = h.get("confidence")
        conf = f"  confidence {confidence:.2f}" if confidence is not None else ""
        origin = f"  ({_provenance(h)})" if _provenance(h) else ""
        say(f"{n}. {h['id']}  score {h['score']:.2f}{conf}  {where}{origin}")
        say(f"   fix: {_fix(h.get('remediation') or {})} -> {h['outcome']}")
        say(f"   {h['summary']}")
        if h.get("why"):
            say(f"   why: {h['why']}")


@memory_app.command("list")
def memory_list(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Only this outcome (recovered, failed, undone).")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0: all).")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List remembered incidents, newest first."""
    params = {
        "limit": limit,
        **({"service": service} if service else {}),
        **({"outcome": outcome} if outcome else {}),
    }
    entries: list[dict[str, Any]] = _read(
        "/memory/list",
        params,
        lambda s: [
            e.to_json() for e in s.list(limit=limit or None, service=service, outcome=outcome)
        ],
    )
    if json_out:
        out(entries)
        return
    if not entries:
        say("no memories yet")
        return
    rows = [["ID", "WHEN", "SERVICE", "FAULT", "FIX", "OUTCOME", "SEEN"]]
    for e in entries:
        rows.append(
            [
                e["id"],
                _when(e.get("created_at")),
                e["service"],
                e["fault_class"],
                _fix(e.get("remediation") or {}),
                e["outcome"] + (" (imported)" if e.get("imported") else ""),
                f"x{int(e.get('recurrences', 0)) + 1}",
            ]
        )
    _table(rows)


@memory_app.command("show")
def memory_show(
    id: Annotated[str, typer.Argument(help="The entry's id (the incident id).")],
    json_out: JsonOpt = False,
) -> None:
    """Show one remembered incident in full. Exit 2 when there is no such id."""

    def local(store: MemoryStore) -> Any:
        entry = store.get(id)
        return None if entry is None else entry.to_json()

    entry: dict[str, Any] | None = _read("/memory/get", {"id": id}, local)
    if entry is None:
        raise UsageError(f"no memory with id {id!r}")
    if json_out:
        out(entry)
        return
    width = max(len(k) for k in entry)
    if _provenance(entry):
        say(f"{'provenance'.ljust(width)}  {_provenance(entry)}")
    for key, value in entry.items():
        if key in ("created_at", "first_seen", "last_seen") and value:
            value = f"{_when(value)} ({value})"
        elif isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        say(f"{key.ljust(width)}  {value}")


@memory_app.command("forget")
def memory_forget(
    id: Annotated[str, typer.Argument(help="The entry's id (the incident id).")],
    json_out: JsonOpt = False,
) -> None:
    """Delete one remembered incident. Exit 2 when there is no such id, 3 while a mind runs."""
    settings = load()
    with _writer(settings) as store:
        if not store.forget(id):
            raise UsageError(f"no memory with id {id!r}")
    if json_out:
        out({"forgotten": id})
    else:
        say(f"forgot {id}")


@memory_app.command("export")
def memory_export(
    file: Annotated[str, typer.Argument(help="JSON-lines file to write ('-': stdout).")],
    json_out: JsonOpt = False,
) -> None:
    """Write every entry as JSON lines, one KnowledgeEntry per line, oldest first."""
    from sre_space.memory.model import KnowledgeEntry, to_jsonl

    docs: list[dict[str, Any]] = _read(
        "/memory/export", {}, lambda s: [e.to_json() for e in s.entries()]
    )
    lines = [to_jsonl(KnowledgeEntry.from_json(d)) for d in docs]
    if file == "-":
        sys.stdout.writelines(lines)
        return
    path = Path(file)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {file}: {exc.strerror}") from None
    if json_out:
        out({"exported": len(lines), "file": str(path)})
    else:
        say(f"exported {len(lines)} entries to {path}")


@memory_app.command("import")
def memory_import(
    file: Annotated[str, typer.Argument(help="JSON-lines file to read ('-': stdin).")],
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Let the Fixer apply these fixes automatically before one has worked here.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add the entries of an export (same id: replaced), marked imported. Their fixes are
    not applied automatically until one has worked here, unless --trust. Bad lines are
    reported with exit 2; the good ones are imported anyway. Exit 3 while a mind runs."""
    from dataclasses import replace

    from sre_space.memory.model import KnowledgeEntry, read_jsonl

    settings = load()
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read {file}: {reason}") from None
    imported = 0
    rejected: list[dict[str, Any]] = []
    with _writer(settings) as store:
        batch: list[KnowledgeEntry] = []
        for number, entry, error in read_jsonl(text.splitlines()):
            if entry is None:
                rejected.append({"line": number, "error": error})
                continue
            # Whatever the file says: what comes from elsewhere is imported, and
            # trusted only when the person importing it says so.
            batch.append(replace(entry, imported=True, trusted=trust))
            if len(batch) >= IMPORT_CHUNK:
                imported += store.restore(batch)
                batch = []
        if batch:
            imported += store.restore(batch)
    if json_out:
        out({"imported": imported, "rejected": rejected, "file": file, "trusted": trust})
    elif imported or not rejected:
        how = "trusted" if trust else "not applied automatically until verified here"
        say(f"imported {imported} entries from {file} ({how})")
    if rejected:
        listed = ", ".join(f"line {r['line']} ({r['error']})" for r in rejected[:MAX_LISTED_ERRORS])
        more = (
            f" and {len(rejected) - MAX_LISTED_ERRORS} more"
            if len(rejected) > MAX_LISTED_ERRORS
            else ""
        )
        raise UsageError(
            f"{file}: {len(rejected)} bad line(s) not imported: {listed}{more}; "
            f"{imported} good entries imported"
        )


@memory_app.command("stats")
def memory_stats(
    top: Annotated[int, typer.Option(min=1, help="How many recurring signatures.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """How much is remembered: by service, by outcome, and the signatures that keep coming back."""
    doc: dict[str, Any] = _read("/memory/stats", {"top": top}, lambda s: s.stats(top=top))
    if json_out:
        out(doc)
        return

    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"

    say(f"{doc['count']} entries, {doc.get('signatures', 0)} signatures")
    say(f"by service:     {counts(doc['by_service'])}")
    say(f"by outcome:     {counts(doc['by_outcome'])}")
    say(f"by fault class: {counts(doc.get('by_fault_class', {}))}")
    recurring = doc.get("recurring") or []
    if not recurring:
        say("no signature has recurred")
        return
    say("recurring signatures:")
    for r in recurring:
        say(
            f"  x{r['recurrences'] + 1}  {r['signature']}  "
            f"({r['entries']} kept, {r['recovered']} recovered, last {_when(r['last_seen'])})"
        )
