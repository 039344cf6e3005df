"""The safety policy as a user configures it: config file, environment, guards."""

from __future__ import annotations

from pathlib import Path

import pytest

from sre_space.config import Settings
from sre_space.errors import UsageError
from sre_space.squad.policy import policy_from

PLAN = {"action": "restart", "service": "payments", "params": {}}


def test_the_config_file_sets_the_guards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRE_SPACE_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text(
        'policy = "approve"\n'
        'policy_allowed_actions = ["patch_config", "rollback"]\n'
        'policy_allowed_services = ["checkout"]\n'
        "policy_max_actions = 1\n"
        "policy_cooldown_s = 30\n"
    )
    policy = policy_from(Settings())
    assert policy.mode == "approve"
    assert "not allowed" in (policy.refuse(PLAN, 0) or "")
    patch = {"action": "patch_config", "service": "payments", "params": {}}
    assert "service 'payments'" in (policy.refuse(patch, 0) or "")
    ok = {**patch, "service": "checkout"}
    assert policy.refuse(ok, 0, now=1000.0) is None
    assert "limit 1" in (policy.refuse(ok, 1, now=1000.0) or "")
    policy.record("checkout", now=1000.0)
    assert "cooldown 30 s" in (policy.refuse(ok, 0, now=1010.0) or "")
    assert policy.refuse(ok, 0, now=1031.0) is None


def test_the_environment_outranks_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRE_SPACE_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text('policy = "approve"\n')
    monkeypatch.setenv("SRE_SPACE_POLICY", "dry-run")
    assert policy_from(Settings()).mode == "dry-run"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"policy": "yolo"}, "unknown policy 'yolo'"),
        ({"policy_allowed_actions": ["restart", "rm -rf"]}, "unknown action(s)"),
    ],
)
def test_a_bad_policy_is_a_usage_error(
    tmp_path: Path, setting: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        policy_from(Settings(home=tmp_path, **setting))


def test_per_service_rules_come_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sre_space.mind import scout_rules

    monkeypatch.setenv("SRE_SPACE_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text(
        "[service_rules.reports]\nlatency_ms = 5000\n[service_rules.auth]\nerrors = false\n"
    )
    rules = scout_rules(Settings())
    assert rules.latency_for("reports") == 5000 and rules.latency_for("checkout") == 800
    assert rules.errors_for("auth") is False and rules.errors_for("checkout") is True
    (tmp_path / "config.toml").write_text("[service_rules.reports]\nlatency = 5\n")
    with pytest.raises(UsageError, match="service_rules"):
        scout_rules(Settings())


def test_the_config_file_is_read_from_the_home_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home given to Settings (a drill's, a test's) brings its own config.toml, not the default home's."""
    default, given = tmp_path / "default", tmp_path / "given"
    for home, mode in ((default, "auto"), (given, "approve")):
        home.mkdir()
        (home / "config.toml").write_text(f'policy = "{mode}"\n')
    monkeypatch.setenv("SRE_SPACE_HOME", str(default))
    assert Settings().policy == "auto"
    assert Settings(home=given).policy == "approve"
    monkeypatch.setenv("SRE_SPACE_HOME", str(given))
    assert Settings().policy == "approve"
    (given / "config.toml").write_text("policy = approve oops\n")
    with pytest.raises(UsageError, match=f"cannot read {given / 'config.toml'}"):
        Settings(home=given)
