"""SRE shorthand spelled out before a query is embedded.

A small general-purpose sentence model does not know that ``rss`` is memory
or that ``5xx`` are server errors; people typing at 3 a.m. use exactly those
words. Each term found in a query appends its plain-words meaning; the query
itself is kept as typed. General operations jargon only: nothing here names a
service, a fault of the lab, or a remedy.
"""

from __future__ import annotations

import re

GLOSSARY: dict[str, str] = {
    r"oom(?:[- ]?kill(?:ed|er)?)?s?": "out of memory, the process was killed",
    r"rss|resident set": "resident memory",
    r"gc": "garbage collection pauses",
    r"[45]xx|5\d\ds?|[45]\d\d errors?": "HTTP server errors",
    r"p(?:50|90|95|99|999)|tail latency": "latency, slow responses",
    r"seg ?faults?|sigsegv|core dump(?:ed)?": "the process crashed",
    r"sigkill(?:ed)?|kill -9": "the process was killed",
    r"crash ?loop(?:back ?off)?|restart loop": "the process keeps crashing and restarting",
    r"db|pg|postgres|mysql|rds": "database",
    r"conns?": "connections",
    r"qps|rps": "requests per second, load",
    r"lb": "load balancer",
    r"pods?|containers?": "service instance, process",
    r"cpu|load avg|load average": "CPU usage",
}
_TERMS = [(re.compile(rf"\b(?:{k})\b", re.I), v) for k, v in GLOSSARY.items()]


def expand(query: str) -> str:
    """The query, plus what its shorthand means: ``"rss up"`` -> ``"rss up (resident memory)"``."""
    meanings = list(dict.fromkeys(v for pattern, v in _TERMS if pattern.search(query)))
    return f"{query} ({'; '.join(meanings)})" if meanings else query
