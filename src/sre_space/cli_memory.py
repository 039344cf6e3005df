"""`sre-space memory ...`: the squad's memory of past incidents."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sre_space.cli_common import JsonOpt, mind_port, out
from sre_space.config import load

memory_app = typer.Typer(help="Query the squad's memory of past incidents.", no_args_is_help=True)


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What happened, in your words.")],
    k: Annotated[int, typer.Option("--k", help="How many hits.")] = 3,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search memory: similar past incidents, their fix and whether it worked."""
    from sre_space import localapi
    from sre_space.paths import Paths

    settings = load()
    paths = Paths(settings.home)
    port = mind_port(paths)
    if port is not None:
        # A running mind owns the embedded store: ask it, never open it twice.
        params = {"q": query, "k": k, **({"service": service} if service else {})}
        hits: list[dict[str, Any]] = localapi.get(port, paths.mind_token, "/memory/search", params)
    else:
        from sre_space.memory.store import MemoryStore

        store = MemoryStore(settings)
        hits = [h.to_json() for h in store.search(query, k=k, service=service)]
    if json_out:
        out(hits)
        return
    if not hits:
        print("no memories yet")
    for n, h in enumerate(hits, 1):
        rem = h.get("remediation", {})
        print(
            f"{n}. {h['id']}  score {h['score']:.2f}  {h['service']}  "
            f"fix: {rem.get('action')} {rem.get('params', '')} -> {h['outcome']}"
        )
        print(f"   {h['summary']}")
        if h.get("why"):
            print(f"   why: {h['why']}")
