"""Triggers of the Midjourney provider."""

from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger

__all__ = ["MidjourneyTaskTrigger"]
