"""The reference docs are built from docstrings: every parameter of every public class is documented."""

from __future__ import annotations

import inspect
import re

import pytest

from airflow_provider_mj import operators
from airflow_provider_mj.sensors import MidjourneyTaskSensor
from airflow_provider_mj.triggers import MidjourneyTaskTrigger

CLASSES = [getattr(operators, name) for name in operators.__all__] + [MidjourneyTaskSensor, MidjourneyTaskTrigger]


def _own_parameters(cls) -> set[str]:
    # Every parameter a user can pass that this provider defines, on the class or any of its bases
    # (BaseMidjourneySubmitOperator, BaseMidjourneyNewJobOperator...), but not Airflow's own.
    params = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("airflow_provider_mj."):
            init = inspect.unwrap(klass.__dict__.get("__init__", lambda self: None))
            params |= {n for n, p in inspect.signature(init).parameters.items()
                       if n != "self" and p.kind is not p.VAR_KEYWORD}
    return params


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_parameter_is_documented(cls):
    documented = set(re.findall(r":param (\w+):", cls.__doc__ or ""))
    assert _own_parameters(cls) <= documented
