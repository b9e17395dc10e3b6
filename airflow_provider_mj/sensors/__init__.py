"""Sensors of the Midjourney provider."""

from airflow_provider_mj.sensors.midjourney import MidjourneyTaskSensor

__all__ = ["MidjourneyTaskSensor"]
