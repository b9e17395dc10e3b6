"""Triggers of the Midjourney provider."""

from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger

__all__ = ["MidjourneyRoomTrigger", "MidjourneyTaskTrigger"]
