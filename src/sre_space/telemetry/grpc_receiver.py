"""The OTLP/gRPC trace receiver (``TraceService/Export``), per the OTLP specification.

Answers an ``ExportTraceServiceResponse`` (``partial_success`` filled when spans
were refused); ``INVALID_ARGUMENT`` with a ``BadRequest`` detail for a payload
that is not an ``ExportTraceServiceRequest``; ``UNAVAILABLE`` with a
``RetryInfo`` detail (retryable, with the delay to wait) when the intake queue
is full. Messages past the size limit get gRPC's own ``RESOURCE_EXHAUSTED``
(without ``RetryInfo``: not retryable). gzip-compressed calls are inflated by
grpcio.

The servicer is opentelemetry-proto's generated ``TraceServiceServicer``; the
server registers it with a handler that takes the raw bytes, so a bad payload
is answered ``INVALID_ARGUMENT`` (grpcio's own deserializer would answer
``INTERNAL``) and the spans can keep the bytes (see :mod:`.otlp`).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceServicer

from sre_space.telemetry.intake import Intake
from sre_space.telemetry.otlp import Decoded, DecodeFailure, decode_protobuf, decode_request
from sre_space.telemetry.receiver import bearer_ok, check_bind
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
SOURCE = "otlp_grpc"


class _RichStatus(grpc.Status):  # type: ignore[misc]  # grpcio ships no types
    """A status with ``google.rpc.Status`` details in the trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[Any]) -> None:
        self.code = code
        self.details = message
        status = status_pb2.Status(code=code.value[0], message=message)
        for detail in details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)


class OtlpTraceServicer(TraceServiceServicer):
    """``Export`` into an :class:`Intake`, answering as the OTLP spec asks."""

    def __init__(self, intake: Intake, token: str | None = None) -> None:
        self.intake = intake
        self.token = token

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        return self._accept(lambda: decode_request(request), context)

    def export_bytes(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        return self._accept(lambda: decode_protobuf(body), context)

    def _accept(
        self, decode: Callable[[], Decoded], context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        intake = self.intake
        if self.token:
            metadata = dict(context.invocation_metadata() or ())
            if not bearer_ok(metadata.get("authorization"), self.token):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        if not intake.has_room():
            intake.refuse(SOURCE)
            self._unavailable(context)
        try:
            decoded = decode()
        except DecodeFailure as exc:
            intake.bad_request(SOURCE)
            self._invalid(context, str(exc).splitlines()[0][:300] if str(exc) else "bad data")
        if not intake.offer(decoded, SOURCE):
            self._unavailable(context)
        resp = ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = decoded.message
        return resp

    @staticmethod
    def _invalid(context: grpc.ServicerContext, message: str) -> NoReturn:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field="request", description=message
        )
        context.abort_with_status(
            _RichStatus(
                grpc.StatusCode.INVALID_ARGUMENT,
                message,
                [error_details_pb2.BadRequest(field_violations=[violation])],
            )
        )
        raise AssertionError("unreachable")  # abort_with_status raises

    def _unavailable(self, context: grpc.ServicerContext) -> NoReturn:
        delay = duration_pb2.Duration(seconds=self.intake.retry_after_s)
        context.abort_with_status(
            _RichStatus(
                grpc.StatusCode.UNAVAILABLE,
                "intake queue is full; retry later",
                [error_details_pb2.RetryInfo(retry_delay=delay)],
            )
        )
        raise AssertionError("unreachable")


def _bytes(body: bytes) -> bytes:
    return body


class OtlpGrpcReceiver:
    """Serves OTLP/gRPC into an :class:`Intake` (or a bare store, see OtlpHttpReceiver)."""

    def __init__(
        self,
        sink: Intake | TraceStore,
        host: str,
        port: int,
        max_message_bytes: int,
        workers: int = 4,
        token: str | None = None,
    ) -> None:
        check_bind(host, token)
        self.intake = sink if isinstance(sink, Intake) else Intake(sink)
        self.servicer = OtlpTraceServicer(self.intake, token)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
            options=[
                # Fail like any other listener when the port is taken.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        handler = grpc.unary_unary_rpc_method_handler(
            self.servicer.export_bytes,
            request_deserializer=_bytes,
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
        )
        self._host = host
        try:
            self._port = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:  # grpcio: "Failed to bind to address ..."
            self._port = 0
        if not self._port:
            raise OSError(errno.EADDRINUSE, "address already in use or not available")

    @property
    def port(self) -> int:
        return int(self._port)

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    def start(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait(grace + 4)


__all__ = ["OtlpGrpcReceiver", "OtlpTraceServicer"]
