"""Hooks of the Midjourney provider: :class:`MidjourneyHook` owns every HTTP call."""

from airflow_provider_mj.hooks.midjourney import MidjourneyHook

__all__ = ["MidjourneyHook"]
