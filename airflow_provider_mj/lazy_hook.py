"""What the operators and the sensor share: the hook, created on first use, and the deferral timeout.

DAG files import the operators and the sensor at parse time; the hook (and its HTTP stack) is
imported only when a task runs and first touches ``hook``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook


class MidjourneyHookMixin:
    """Gives an operator or sensor with a ``midjourney_conn_id`` its :class:`MidjourneyHook`.

    The hook is created on first use, in ``execute``: parsing a DAG never imports it.
    """

    midjourney_conn_id: str
    execution_timeout: timedelta | None

    @cached_property
    def hook(self) -> MidjourneyHook:
        """The hook on ``midjourney_conn_id`` (one per operator instance)."""
        from airflow_provider_mj.hooks.midjourney import MidjourneyHook

        return MidjourneyHook(midjourney_conn_id=self.midjourney_conn_id)

    def deferral_timeout(self, context: Any) -> timedelta | None:
        """What is left of ``execution_timeout`` for this try, for ``defer(timeout=...)``.

        Airflow applies ``execution_timeout`` to a deferred task only when it is given to
        ``defer`` (as the official providers do); the job's own ``timeout`` is the trigger's
        deadline, and whichever comes first ends the wait. None when no execution_timeout is set.
        """
        limit = self.execution_timeout
        if limit is None:
            return None
        started = getattr(context["ti"], "start_date", None)
        if started is None:
            return limit
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        return max(limit - (datetime.now(timezone.utc) - started), timedelta(seconds=1))
