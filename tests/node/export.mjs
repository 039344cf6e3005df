// Sends a small trace with the OpenTelemetry JS SDK's OTLP/HTTP protobuf exporter
// to the URL given as the first argument ("gzip" as the second compresses), then
// prints one JSON line per span it exported, for tests/integration/test_receiver_node.py.
import { SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";

const [url, compression = "none"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node export.mjs URL [gzip|none]");
  process.exit(2);
}

const exporter = new OTLPTraceExporter({ url, compression, timeoutMillis: 10000 });
const memory = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-frontend", "deployment.environment": "test" }),
  spanProcessors: [new SimpleSpanProcessor(exporter), new SimpleSpanProcessor(memory)],
});
const tracer = provider.getTracer("sre-space-node-test", "1.0.0");

// No context manager is registered: the parent is passed explicitly.
const server = tracer.startSpan("GET /cart", { kind: SpanKind.SERVER });
server.setAttribute("http.response.status_code", 500);
server.setAttribute("http.request.method", "GET");
const client = tracer.startSpan(
  "POST /checkout",
  { kind: SpanKind.CLIENT },
  trace.setSpan(context.active(), server),
);
client.setAttribute("peer.service", "checkout");
client.setAttribute("retry.count", 2);
client.setAttribute("sampled.ratio", 0.5);
client.setAttribute("cached", false);
client.setAttribute("tags", ["a", "b"]);
client.recordException(new Error("checkout timed out"));
client.setStatus({ code: SpanStatusCode.ERROR, message: "timeout" });
client.end();
server.setStatus({ code: SpanStatusCode.ERROR });
server.end();

await provider.forceFlush();
const finished = memory.getFinishedSpans(); // shutdown() empties the in-memory exporter
await provider.shutdown();
for (const span of finished) {
  const ctx = span.spanContext();
  console.log(
    JSON.stringify({
      traceId: ctx.traceId,
      spanId: ctx.spanId,
      parentSpanId: span.parentSpanContext?.spanId ?? span.parentSpanId ?? null,
      name: span.name,
      kind: span.kind,
      attributes: span.attributes,
      status: span.status,
      events: span.events.map((e) => e.name),
    }),
  );
}
