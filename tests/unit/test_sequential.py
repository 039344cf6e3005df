"""Wald's sequential test behind verification (squad/sequential.py): pure, no process."""

from __future__ import annotations

import random

import pytest

from sre_space.squad.sequential import WRONG_RECOVERY, WRONG_UNDO, failed_clearly, recovered_clearly

SLO = 0.05


def _runs(bad_share: float, runs: int, seed: int, n: int = 3000) -> int:
    """In how many of ``runs`` random runs of ``n`` requests a recovery was called."""
    rng = random.Random(seed)
    return sum(
        recovered_clearly((rng.random() < bad_share for _ in range(n)), SLO) for _ in range(runs)
    )


def test_a_long_run_of_good_requests_is_a_clear_recovery() -> None:
    assert recovered_clearly([False] * 200, SLO)


def test_a_handful_of_good_requests_is_not_yet() -> None:
    assert not recovered_clearly([False] * 10, SLO)


def test_once_clearly_out_of_the_slo_the_answer_is_no_whatever_follows() -> None:
    # The caller looks again over newer requests; this run has said its word.
    assert not recovered_clearly([True] * 5 + [False] * 1000, SLO)


def test_at_twice_the_slo_a_recovery_is_called_about_as_rarely_as_promised() -> None:
    # Wald's bound at the alternative itself; the margin covers the sampling.
    assert _runs(2 * SLO, 1000, seed=3) <= 2.5 * WRONG_RECOVERY * 1000


def test_far_over_the_slo_a_recovery_is_never_called() -> None:
    assert _runs(0.3, 300, seed=5) == 0


def test_well_under_the_slo_a_recovery_is_called_nearly_always() -> None:
    assert _runs(0.01, 300, seed=11) >= 285


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_no_room_between_the_hypotheses_leaves_it_to_the_window(threshold: float) -> None:
    assert not recovered_clearly([False] * 10_000, threshold)


# --- the other way: a change that clearly did not help --------------------------------------


def _undone(before: float, after: float, runs: int, seed: int, n: int = 200) -> int:
    """In how many of ``runs`` windows of ``n`` requests at ``after`` bad share it was undone."""
    rng = random.Random(seed)
    return sum(
        failed_clearly(sum(rng.random() < after for _ in range(n)), n, before) for _ in range(runs)
    )


def test_a_fault_that_goes_on_as_before_is_a_clear_failure() -> None:
    assert failed_clearly(60, 60, 1.0)
    assert failed_clearly(190, 200, 0.9)


@pytest.mark.parametrize(
    ("bad", "requests", "before"), [(30, 60, 1.0), (10, 10, 1.0), (5, 200, 0.0)]
)
def test_a_recovery_under_way_too_few_requests_or_nothing_bad_before_is_not(
    bad: int, requests: int, before: float
) -> None:
    # a queue draining (half as bad), ten requests, a change judged on nothing
    assert not failed_clearly(bad, requests, before)


def test_a_change_that_made_it_worse_is_called_nearly_always() -> None:
    assert _undone(0.4, 0.6, 300, seed=7) >= 295


def test_no_help_at_all_is_called_more_often_the_more_requests_say_so() -> None:
    # The test is one-sided against "it helped at all": a failure as bad as before
    # is clear on a busy window, often not on a small one (the timeout decides then).
    assert _undone(0.4, 0.4, 300, seed=7, n=1000) > 2 * _undone(0.4, 0.4, 300, seed=7, n=200)


def test_a_change_that_halved_the_bad_share_is_undone_about_never() -> None:
    assert _undone(0.4, 0.2, 1000, seed=13) <= WRONG_UNDO * 1000
