"""``python -m airflow_provider_mj.emulator``: same as the ``mj-emulator`` command."""

import sys

from .cli import main

sys.exit(main())
