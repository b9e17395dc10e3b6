"""The hook of an operator or sensor, created on first use.

DAG files import the operators and the sensor at parse time; the hook (and its HTTP stack) is
imported only when a task runs and first touches ``hook``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook


class MidjourneyHookMixin:
    """Gives an operator or sensor with a ``midjourney_conn_id`` its :class:`MidjourneyHook`.

    The hook is created on first use, in ``execute``: parsing a DAG never imports it.
    """

    midjourney_conn_id: str

    @cached_property
    def hook(self) -> MidjourneyHook:
        """The hook on ``midjourney_conn_id`` (one per operator instance)."""
        from airflow_provider_mj.hooks.midjourney import MidjourneyHook

        return MidjourneyHook(midjourney_conn_id=self.midjourney_conn_id)
