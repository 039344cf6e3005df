"""Senses: the span model, decoding, receivers and the bounded trace store.

    model.py          Span (attributes decoded on demand), SpanEvent, SpanKind
    otlp.py           OTLP protobuf and JSON -> Span; Decoded, DecodeFailure
    otlp_lazy.py      a protobuf span's attributes and events, read only when asked
    jaeger.py         Jaeger JSON (v1 data, bare trace, v3 result) -> Span
    files.py          read_spans(path or "-"): any of the above, plain or gzip
    receiver.py       OTLP/HTTP on 4318 (protobuf, JSON, gzip, chunked)
    http_server.py    its request handler and server (paths, auth, 503 + Retry-After)
    grpc_receiver.py  OTLP/gRPC on 4317 (TraceService/Export)
    intake.py         the bounded queue between senses and store; IntakeStats
    store.py          the bounded trace store; StoreStats
    sources.py        Jaeger /api/v3 poller, Kafka otlp_spans consumer (optional)
    senses.py         all of the above started and stopped together for the mind

    receivers ──decode──► Intake (bounded; full: 503 / UNAVAILABLE + retry delay)
    sources ────decode──►   │ one consumer thread
                            ▼
                        TraceStore ──► listeners (detectors)
"""
