"""
### Shorten a long prompt, then imagine from the first shortened prompt

Midjourney's `/shorten` reads a wordy prompt and proposes up to five shorter ones that keep the
words that matter. This DAG:

1. **shorten**s the `prompt` param (its return value carries the proposals in `prompts`);
2. **pick_prompt** takes the proposal number `choice` (1 = the first), failing clearly if the
   server proposed fewer;
3. **imagine**s from it.

**Params**: `prompt` (the long prompt), `choice` (which shortened prompt to use, 1 to 5).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mj.operators import MidjourneyImagineOperator, MidjourneyShortenOperator

POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))
JOB_TIMEOUT = 30 * 60

LONG_PROMPT = (
    "A very detailed and extremely beautiful painting of an old wooden sailing ship that is slowly "
    "sailing across a calm and quiet sea at sunset, with soft golden light reflecting on the gentle "
    "waves, a few white seagulls flying in the sky above it, and distant misty mountains on the "
    "horizon, in the style of a classical romantic oil painting, highly detailed, masterpiece"
)


@task
def pick_prompt(shortened: dict, choice: str) -> str:
    """The ``choice``-th shortened prompt (1-based) of the shorten task's result."""
    prompts = shortened.get("prompts") or []
    index = int(choice)
    if not 1 <= index <= len(prompts):
        raise ValueError(
            f"shorten proposed {len(prompts)} prompt(s), cannot pick number {index}: {prompts!r}"
        )
    prompt = prompts[index - 1]
    print(f"imagining from shortened prompt {index}/{len(prompts)}: {prompt!r}")
    return prompt


@dag(
    dag_id="mj_shorten_then_imagine",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    params={
        "prompt": Param(LONG_PROMPT, type="string", minLength=1, title="Long prompt"),
        "choice": Param(1, type="integer", minimum=1, maximum=5, title="Shortened prompt to use"),
    },
)
def mj_shorten_then_imagine():
    # [START shorten]
    shorten = MidjourneyShortenOperator(
        task_id="shorten",
        prompt="{{ params.prompt }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )
    MidjourneyImagineOperator(
        task_id="imagine",
        prompt=pick_prompt(shorten.output, choice="{{ params.choice }}"),
        state="{{ dag.dag_id }}/{{ run_id }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )
    # [END shorten]


mj_shorten_then_imagine()
