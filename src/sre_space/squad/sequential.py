"""Sequential verdicts over fresh requests: is the SLO back, clearly, already? Or did
the change clearly not help?

Verification used to wait for a fixed window of fresh requests. A sequential
probability ratio test stops as soon as the requests seen so far say, with
the error rates below, that the share of bad ones (failed, or slower than the
latency bar) sits under the SLO's threshold rather than over it. On a busy
service that is about a second of requests; on a quiet one it can take
longer than the window, and the window's verdict still applies (see
``squad/verify.py``).

Wald's bounds: a fix that left the bad share at twice the threshold is called
a recovery with a chance of about ``WRONG_RECOVERY`` per start of the test,
less the further over it is.

The two hypotheses bracket the threshold ``t``: within it, a bad share of
``t / 2``; out of it, ``2 t``. Each good request moves the log-likelihood
ratio by ``log((1 - 2t) / (1 - t/2))``, each bad one by ``log(4)``.

The other way, a fix that did not help is undone as soon as that is clear,
not when ``verify_timeout_s`` runs out (``failed_clearly``): an exact binomial
test of the newest window's bad requests against the bad share before the
change, which a recovery under way, a queue draining, does not pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# Chance of calling a fix that did not restore the SLO a recovery: small, since
# a credited fix is remembered and repeated. Chance of missing a real recovery
# for a while: larger, since the test goes on and the window's verdict remains.
WRONG_RECOVERY = 0.01
MISSED_RECOVERY = 0.05


def recovered_clearly(bad: Iterable[bool], threshold: float) -> bool:
    """Whether these requests, in order, show a bad share under ``threshold``, clearly.

    The test runs once over them, from the first: when it is first clear that
    they are out of the SLO, the answer is no, whatever follows. A recovery
    that takes a moment to show is the caller's to look for again, over newer
    requests; each new start is one more chance of a wrong "yes", so the
    caller starts again only once a window has passed.
    """
    if not 0.0 < threshold < 0.5:
        return False  # no room between the hypotheses: leave it to the window
    low, high = threshold / 2, 2 * threshold
    good_step = math.log((1 - high) / (1 - low))
    bad_step = math.log(high / low)
    accept = math.log(WRONG_RECOVERY / (1 - MISSED_RECOVERY))
    reject = math.log((1 - WRONG_RECOVERY) / MISSED_RECOVERY)
    llr = 0.0
    for is_bad in bad:
        llr += bad_step if is_bad else good_step
        if llr <= accept:
            return True
        if llr >= reject:
            return False
    return False


# A change that helps at all lowers the share of bad requests below this part
# of what it was before it. A fix is undone before its time is up only when the
# newest fresh requests rule that out, with this chance of being wrong per look
# (a fix undone early pages a person for a fault the squad might have mended).
HELPS = 0.9
WRONG_UNDO = 0.01


def failed_clearly(bad: int, requests: int, before_share: float) -> bool:
    """Whether ``bad`` of ``requests`` fresh ones rule out that the change helped at all.

    The test is one-sided and exact: under "it helped" the bad share is at
    most ``HELPS * before_share``, and seeing ``bad`` or more of ``requests``
    would then have a chance under ``WRONG_UNDO``. A recovery under way (a
    queue draining) lowers the share and is not called a failure; a fault that
    went on as before, or worse, is.
    """
    if requests <= 0 or not 0.0 < before_share <= 1.0:
        return False
    return _tail(bad, requests, HELPS * before_share) < WRONG_UNDO


def _tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (n is a few thousand at most)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    total = sum(
        math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k, n + 1)
    )
    return min(1.0, total)
