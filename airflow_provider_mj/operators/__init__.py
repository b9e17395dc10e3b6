"""Operators of the Midjourney provider: one per route of the task API."""

from airflow_provider_mj.operators.base import BaseMidjourneySubmitOperator
from airflow_provider_mj.operators.midjourney import (
    MidjourneyActionOperator,
    MidjourneyBlendOperator,
    MidjourneyDescribeOperator,
    MidjourneyImageSeedOperator,
    MidjourneyImagineOperator,
    MidjourneyListTasksOperator,
    MidjourneyModalOperator,
    MidjourneyShortenOperator,
)
from airflow_provider_mj.operators.save_image import MidjourneySaveImageOperator

__all__ = [
    "BaseMidjourneySubmitOperator",
    "MidjourneyActionOperator",
    "MidjourneyBlendOperator",
    "MidjourneyDescribeOperator",
    "MidjourneyImageSeedOperator",
    "MidjourneyImagineOperator",
    "MidjourneyListTasksOperator",
    "MidjourneyModalOperator",
    "MidjourneySaveImageOperator",
    "MidjourneyShortenOperator",
]
