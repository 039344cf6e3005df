"""sre-space: autonomous incident response on OpenTelemetry."""

__version__ = "0.1.0"
