#!/usr/bin/env python
"""A real local Airflow deployment runs the provider's DAGs, checked over the REST API (and in Chromium).

Two profiles (``--profile``, ``make deploy-test PROFILE=...``); every server on 127.0.0.1 only,
everything in one private temp dir, torn down at the end even on failure or Ctrl-C:

``local`` (default)
    PostgreSQL, ``airflow api-server``, ``scheduler`` (LocalExecutor), ``dag-processor``,
    ``triggerer`` and the Midjourney emulator. Runs ``mj_imagine_upscale_describe``, SIGKILLs the
    triggerer while mapped tasks are deferred and starts a new one; checks the run, the deferrals,
    the takeover by the new triggerer job, exactly one imagine + four action + four describe
    submissions, the saved images, the extra link, a task log, loopback-only sockets, then the UI
    in headless Chromium (playwright-core from ``tests/deploy/browser``); last ``mj_daily_content``
    (its saved images are asset events) and the ``mj_contact_sheet`` runs the scheduler starts
    on them (``assets``).

``celery``
    PostgreSQL, Redis (Debian's ``redis-server``, our own config), ``CeleryExecutor`` with two
    ``airflow celery worker`` processes, two triggerers, scheduler, dag-processor, api-server and the
    emulator. Runs the same example DAG, then a burst of 30 mapped imagines over a small emulated
    account during which one triggerer is SIGKILLed (the other takes its triggers over; poll
    requests per interval are counted with two triggerers and with one), then a blocking imagine
    whose Celery worker is SIGKILLed mid-job (Airflow retries it; the retry re-attaches to the job).

Exit codes: 0 all checks passed, 1 a check failed, 77 a prerequisite outside the project is missing
and cannot be installed here (e.g. not root and no PostgreSQL server). ``--report FILE`` writes a
JSON report (the pytest tests in ``tests/deploy`` read it). The code is in ``scripts/deploy/``:
``prereqs`` (apt/pip/npm), ``processes`` (the services), ``api`` (REST API), ``flagship`` (the
example DAG's run and checks), ``assets`` (the daily DAG and its contact sheet), ``celery_run``
(burst, failover, worker kill), ``checks`` (sockets, browser), ``main`` (options, profiles).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__.split("\n\n")[0]))
