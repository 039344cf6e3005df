"""Ctrl+P: the command palette offers every action in the key table, by its description."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from sre_space.tui.keys import KEYS, key_label

# Moves and the palette itself make poor commands.
_NOT_COMMANDS = frozenset(
    {"cursor_down", "cursor_up", "page_down", "page_up", "first", "last", "command_palette"}
)


def commands() -> list[tuple[str, str, str]]:
    """(description, action, key) for each palette command."""
    return [(b.description, b.action, key_label(b)) for b in KEYS if b.action not in _NOT_COMMANDS]


class CockpitCommands(Provider):
    async def discover(self) -> Hits:
        for description, action, key in commands():
            yield DiscoveryHit(
                description, partial(self.app.run_action, action), help=f"key: {key}"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for description, action, key in commands():
            score = matcher.match(description)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(description),
                    partial(self.app.run_action, action),
                    help=f"key: {key}",
                )
