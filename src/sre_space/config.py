"""Settings: flag > environment (``SRE_SPACE_*``) > config file > default.

The config file is ``$SRE_SPACE_HOME/config.toml``. Commands build one
``Settings`` and pass it down; nothing else reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sre_space.errors import UsageError

LOOPBACK = "127.0.0.1"
# Defaults shared with the parts that read them (detect.rules, squad.policy,
# rca): kept here so that config imports nothing above itself.
LATENCY_MS = 800.0  # DESIGN's rule: a request slower than this is a slow one
# The Brain's confidence an action needs under ``auto`` (``policy_min_confidence``):
# below it the Fixer looks again, then proposes.
MIN_ACT_CONFIDENCE = 0.45
# How long an opening waits for the Brain's answer about an open incident it may
# belong to, in detection windows: the answer comes in well under a second on an
# idle host, and took longer than one window on a starved one (a second incident
# opened for one fault: a second page).
BRAIN_WAIT_WINDOWS = 3


def default_home() -> Path:
    """The XDG state dir, unless ``SRE_SPACE_HOME`` says otherwise."""
    explicit = os.environ.get("SRE_SPACE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "sre-space"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SRE_SPACE_", extra="ignore")

    home: Path = Field(default_factory=default_home)

    # The mind's OTLP/HTTP receiver; the lab's services export here.
    otlp_host: str = LOOPBACK
    otlp_http_port: int = 4318
    # Bearer token the receivers require (HTTP 401 / gRPC UNAUTHENTICATED without
    # it); needed for any otlp_host but loopback. Never logged.
    otlp_token: SecretStr | None = None
    # More OTLP/HTTP endpoints the embedded lab's services export to as well
    # (`up --export-to URL`, repeatable): every mind on one state_url gets the whole stream.
    export_to: list[str] = Field(default_factory=list)
    max_body_bytes: int = 8 * 1024 * 1024
    store_max_spans: int = 200_000
    # Senses (telemetry/senses.py): gRPC receiver (-1: off), the store's memory
    # cap (estimated), the bounded intake queue and its Retry-After, pull sources
    # (Jaeger is pulled only with jaeger_poll_s > 0: the Collector may already
    # deliver the same spans through Kafka or OTLP).
    otlp_grpc_port: int = 4317
    otlp_max_connections: int = 256
    store_max_bytes: int | None = 512 * 1024 * 1024
    intake_queue_batches: int = 256
    intake_queue_spans: int = 131_072
    intake_retry_after_s: int = 1
    jaeger_url: str | None = None
    jaeger_poll_s: float = 0.0
    kafka_brokers: str | None = None
    kafka_topic: str = "otlp_spans"
    kafka_group: str = "sre-space"

    # Scout's static rules (DESIGN: error status, latency over 800 ms).
    latency_threshold_ms: float = LATENCY_MS
    # Per-service overrides of Scout's static rules, e.g. in config.toml:
    #   [service_rules.reports]
    #   latency_ms = 5000        # a batch service: its requests take seconds
    #   [service_rules.auth]
    #   errors = false           # its instrumentation marks 4xx as ERROR
    service_rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Notification sinks (notify/config.py), e.g. in config.toml:
    #   [notify.oncall]
    #   kind = "pagerduty"            # slack | pagerduty | webhook | apprise
    #   routing_key_env = "PD_KEY"    # secrets as *_env: the variable that holds them
    # Any shape here: notify/config.py checks it and never echoes a value (URLs are secrets).
    notify: dict[str, Any] = Field(default_factory=dict)
    error_rate_threshold: float = 0.05
    detect_window_s: float = 10.0
    min_requests: int = 10
    # An incident whose cause shows no anomaly for this long is resolved by Scout
    # (an escalated one stays a person's to close); longer on a system whose
    # faults come and go, shorter for drills and tests.
    resolve_quiet_s: float = Field(default=30.0, gt=0.0)

    # Fixer: how long a remediation has to show recovery.
    verify_timeout_s: float = 60.0
    verify_window_s: float = 5.0
    policy: str = "auto"
    # The Fixer's hands: auto (Docker for a Compose stack `up` started, else the
    # lab's control API), lab, docker, or plan-compose / plan-kubectl (GitOps: the
    # change is written under $SRE_SPACE_HOME/plans for a person or pipeline to apply).
    actuator: Literal["auto", "lab", "docker", "plan-compose", "plan-kubectl"] = "auto"
    # The safety policy's guards (squad/policy.py); they hold in every mode.
    policy_allowed_actions: list[str] | None = None  # None: every known action
    policy_allowed_services: list[str] | None = None  # None: every service
    policy_max_actions: int = 2  # per incident
    policy_cooldown_s: float = 60.0  # per service
    policy_max_replica_share: float = 0.5  # of a service's replicas out at once
    # The diagnosis' confidence below which `auto` proposes instead of acting.
    policy_min_confidence: float = Field(default=MIN_ACT_CONFIDENCE, ge=0.0, le=1.0)

    # Jules writes the daily review at this local time.
    review_at: str = "09:30"
    review_tz: str = "Asia/Kolkata"

    # Shared state (state/): unset, SQLite files under the home; "postgresql://..." puts
    # the incident log, outbox and checkpoints in PostgreSQL, where minds on any machine
    # share them and one acts at a time, holding a lease of lease_term_s (renewed every
    # third of it). A secret: printed only with its password redacted.
    state_url: SecretStr | None = None
    lease_term_s: float = Field(default=15.0, ge=1.0, le=600.0)

    # Memory: embedded Chroma unless a server URL is given.
    chroma_url: str | None = None
    memory_min_confidence: float = 0.6
    # "module:Name" of a Chroma embedding function to use instead of the shipped MiniLM.
    embedding_function: str | None = None

    @field_validator("export_to")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")) or " " in url:
                raise ValueError("an OTLP/HTTP endpoint, e.g. http://10.0.0.2:4318/v1/traces")
        return value

    @field_validator("review_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hour, sep, minute = value.partition(":")
        if not (
            sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60
        ):
            raise ValueError("use HH:MM, e.g. 09:30")
        return value

    @field_validator("review_tz")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known time zone, e.g. Asia/Kolkata") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file lives in the effective home: the one given to Settings(home=...)
        # or by SRE_SPACE_HOME wins over the default, as it does for every other file.
        home = init_settings().get("home") or env_settings().get("home")
        path = (Path(home).expanduser() if home else default_home()) / "config.toml"
        try:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"cannot read {path}: {exc}".replace("\n", " ")) from None
        return (init_settings, env_settings, toml)

    @property
    def otlp_endpoint(self) -> str:
        return f"http://{self.otlp_host}:{self.otlp_http_port}/v1/traces"

    @property
    def brain_wait_s(self) -> float:
        """How long Scout holds an opening for the Brain's cause of an open incident."""
        return BRAIN_WAIT_WINDOWS * self.detect_window_s


def load(**overrides: Any) -> Settings:
    """Settings with the flags a command was given (``None`` means not given)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
