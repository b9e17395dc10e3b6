"""
### A first Midjourney DAG: imagine a grid, upscale one of its images

The smallest useful DAG, the one `README.md` and `docs/getting-started.md` show:

1. **imagine** a 2x2 grid from a fixed prompt;
2. **upscale** its second image (`U2`): the action operator reads the buttons from the finished
   imagine task it gets as `mj_task_id`.

Both wait for their job (in the triggerer when `[operators] default_deferrable = True`) and
return the finished Midjourney task. The connection is `midjourney_default`.
"""

from __future__ import annotations

# [START first_dag]
import pendulum
from airflow.sdk import dag

from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyImagineOperator


@dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False,
     doc_md=__doc__, tags=["midjourney", "example"])
def mj_first_dag():
    imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a paper boat on a puddle --ar 3:2")
    MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U2")


mj_first_dag()
# [END first_dag]
