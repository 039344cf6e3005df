"""The vocabulary's words are contracts: stored incidents, memory and users' scripts read them."""

from __future__ import annotations

from sre_space import vocabulary as v


def test_the_words_are_exactly_the_stored_ones() -> None:
    assert v.FAULT_CLASSES == (
        "saturation", "timeout", "unreachable", "error", "latency", "cpu", "memory",
    )  # fmt: skip
    assert v.STATUSES == (
        "open", "diagnosing", "mitigating", "mitigated", "degraded", "resolved", "escalated",
    )  # fmt: skip
    assert v.ACTIONS == (
        "restart", "scale_out", "patch_config", "rollback", "open_circuit", "shed_load",
    )  # fmt: skip
    assert v.OUTCOMES == (
        "pending", "awaiting_approval", "recovered", "unclear", "undone", "failed",
        "refused", "denied", "proposed", "dry-run",
    )  # fmt: skip
    assert v.SEVERITIES == ("critical", "error", "warning", "info")
    assert v.INVESTIGATE == "investigate" and v.INVESTIGATE not in v.ACTIONS
    assert v.ENV_PREFIX == "SRE_SPACE_CFG_"


def test_every_word_has_a_meaning() -> None:
    for words, meanings in (
        (v.FAULT_CLASSES, v.FAULT_CLASS_MEANINGS),
        (v.STATUSES, v.STATUS_MEANINGS),
        ((*v.ACTIONS, v.CLOSE_CIRCUIT, v.SCALE_IN, v.INVESTIGATE), v.ACTION_MEANINGS),
        (v.OUTCOMES, v.OUTCOME_MEANINGS),
        (v.SEVERITIES, v.SEVERITY_MEANINGS),
    ):
        assert list(meanings) == list(words)
        assert all(meaning and "\n" not in meaning for meaning in meanings.values())


def test_the_named_groups_hold_only_statuses() -> None:
    assert set(v.ACTIVE) | set(v.WATCHED) | {v.RESOLVED} == set(v.STATUSES)
