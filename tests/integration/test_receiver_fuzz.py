"""Thousands of malformed bodies against the OTLP/HTTP receiver: never a crash, never a 5xx.

Random bytes, truncated and bit-flipped protobufs, and mutated OTLP JSON, sent
as protobuf or JSON, plain or gzip, over one keep-alive connection. Every answer
must be one the spec documents (200, 400, 413, 415), no decoder may fail
unexpectedly (the receiver logs that), and the receiver must still serve a good
request at the end.
"""

from __future__ import annotations

import copy
import gzip
import http.client
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.store import TraceStore

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (the dev extra)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import helpers

FIXTURES = helpers.FIXTURES / "telemetry"
DOCUMENTED = {200, 400, 413, 415}
EXAMPLES = 600  # per test: the four tests send about 4,200 bodies
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Client:
    """One keep-alive connection, reopened when the receiver closes it (413 does)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.sent = 0

    def post(self, body: bytes, content_type: str, gzipped: bool = False) -> int:
        headers = {"Content-Type": content_type}
        if gzipped:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self.conn.request("POST", "/v1/traces", body, headers)
        resp = self.conn.getresponse()
        resp.read()
        self.sent += 1
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return resp.status


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    store = TraceStore(max_spans=20_000)
    rx = OtlpHttpReceiver(store, "127.0.0.1", 0, max_body_bytes=256 * 1024).start()
    c = Client(rx.port)
    yield c
    # Still serving after everything above.
    assert c.post(valid_protobuf(), "application/x-protobuf") == 200
    rx.stop()


@pytest.fixture(autouse=True)
def no_decoder_bugs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.ERROR, logger="sre_space.telemetry"):
        yield
    bugs = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bugs, bugs


def valid_protobuf() -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "fuzz"
    for i in range(3):
        s = rs.scope_spans.add().spans.add()
        s.trace_id, s.span_id, s.name = bytes([i + 1]) * 16, bytes([i + 1]) * 8, f"op{i}"
        a = s.attributes.add()
        a.key, a.value.array_value.values.add().kvlist_value.values.add().key = "nested", "k"
        e = s.events.add()
        e.name = "exception"
    return bytes(req.SerializeToString())


VALID_PB = valid_protobuf()
VALID_JSON = json.loads((FIXTURES / "otlp_trace.json").read_text())
CONTENT_TYPES = st.sampled_from(["application/x-protobuf", "application/json"])

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=40),
    st.sampled_from(["", "0" * 32, "zz", "4BF92F3577B34DA6A3CE929D0E0E4736", "NaN", "Infinity"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["stringValue", "intValue", "arrayValue", "kvlistValue", "values",
                             "key", "value", "bytesValue", "doubleValue", "boolValue", "spans"]),
            inner, max_size=4),
    ),
    max_leaves=12,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = paths(VALID_JSON)[1:]


def mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@FUZZ
@given(body=st.binary(max_size=2048), content_type=CONTENT_TYPES, gzipped=st.booleans())
def test_random_bytes(client: Client, body: bytes, content_type: str, gzipped: bool) -> None:
    assert client.post(body, content_type, gzipped) in DOCUMENTED


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=len(VALID_PB)),
    flips=st.lists(st.tuples(st.integers(0, len(VALID_PB) - 1), st.integers(0, 255)), max_size=6),
    gzipped=st.booleans(),
)
def test_truncated_and_mutated_protobuf(
    client: Client, cut: int, flips: list[tuple[int, int]], gzipped: bool
) -> None:
    body = bytearray(VALID_PB)
    for pos, byte in flips:
        body[pos] = byte
    assert client.post(bytes(body[:cut]), "application/x-protobuf", gzipped) in DOCUMENTED


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(ALL_PATHS), json_values, st.booleans()), min_size=1, max_size=4
    ),
    gzipped=st.booleans(),
)
def test_mutated_otlp_json(
    client: Client, mutations: list[tuple[tuple[Any, ...], Any, bool]], gzipped: bool
) -> None:
    doc = VALID_JSON
    for path, value, delete in mutations:
        try:
            doc = mutate(doc, path, value, delete)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the path
    assert client.post(json.dumps(doc).encode(), "application/json", gzipped) in DOCUMENTED


@FUZZ
@given(
    text=st.text(max_size=300),
    cut=st.integers(min_value=0, max_value=4000),
    nesting=st.integers(min_value=0, max_value=3000),
)
def test_truncated_and_deep_json(client: Client, text: str, cut: int, nesting: int) -> None:
    whole = json.dumps(VALID_JSON).encode()
    assert client.post(whole[:cut] + text.encode(), "application/json") in DOCUMENTED
    deep = '{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": '
    deep += '{"kvlistValue": {"values": [{"key": "k", "value": ' * (nesting // 4)
    deep += "1" + "}]}}" * (nesting // 4) + "}]}}]}"
    assert client.post(deep.encode(), "application/json") in DOCUMENTED
    assert client.post(b"[" * nesting + b"]" * nesting, "application/json") in DOCUMENTED
