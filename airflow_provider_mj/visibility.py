"""The "not visible yet" grace: one rule for a job a relay does not show right after its submit.

Relays refresh their view of the upstream server every ~15 s and may answer "no such task" for a
job they accepted moments ago. Until ``visible_by`` (epoch seconds, :data:`NOT_VISIBLE_GRACE_SECONDS`
after the submit, or after a sensor started watching) such an answer means "not visible yet":
the blocking wait, the trigger's wait and the sensor keep polling, and an Airflow retry
re-attaches to the job instead of paying for it twice. After ``visible_by``, "not found" is an
error. Every one of those places asks :func:`not_visible_yet`.
"""

from __future__ import annotations

import time

#: Seconds after a submit during which "no such task" means "not visible yet" rather than "gone".
NOT_VISIBLE_GRACE_SECONDS = 60.0


def visible_by(since: float | None = None) -> float:
    """Epoch seconds until which "no such task" means "not visible yet", counted from ``since``.

    :param since: when the job was submitted (or first watched), epoch seconds; None: now.
    """
    return (time.time() if since is None else float(since)) + NOT_VISIBLE_GRACE_SECONDS


def not_visible_yet(visible_by: float | None) -> bool:
    """Whether a "no such task" read now is to be waited through (True) rather than raised.

    :param visible_by: the end of the grace (epoch seconds); None: no grace, not found is final.
    """
    return visible_by is not None and time.time() < visible_by
