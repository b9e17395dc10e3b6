"""``scripts/demo.py`` end to end: it succeeds, and the flagship DAG's log of a clean run is clean.

The demo runs as a user runs it (a subprocess: the emulator, ``airflow db migrate``,
``airflow dags test``), only in a private folder and with fast jobs. A newcomer reads that log
first: a line at warning level or above in a run where nothing is wrong teaches them to ignore
the log, so every such line is a defect.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DEMO = REPO_ROOT / "scripts" / "demo.py"
#: structlog's console lines (``2026-01-01T10:00:00.000000Z [warning  ] ...``) and plain logging's.
LOUD_LINE = re.compile(r"\[(warning|error|critical|exception)\s*\]|^(WARNING|ERROR|CRITICAL)\b|^Traceback ", re.I)


def loud_lines(log_text: str) -> list[str]:
    """The lines of a log at warning level or above (tracebacks included)."""
    return [line for line in log_text.splitlines() if LOUD_LINE.search(line)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run in a private folder; its stdout and folder."""
    demo_dir = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--demo-dir", str(demo_dir), "--job-seconds", "0.4", "--poll-interval", "0.1",
         "--prompt", "a lighthouse at dusk, oil painting"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    return proc, demo_dir


def test_the_demo_saves_four_images_and_their_prompts(demo_run):
    proc, demo_dir = demo_run

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK in" in proc.stdout and "9 Midjourney waits went through the trigger" in proc.stdout
    manifest = json.loads((demo_dir / "output" / "mj_imagine_upscale_describe" / "manifest.json").read_text())
    assert [image["button"] for image in manifest["images"]] == ["U1", "U2", "U3", "U4"]
    for image in manifest["images"]:
        assert Path(image["path"].removeprefix("file://")).read_bytes()[:4] == b"\x89PNG"
        # The emulator describes an upscale with words of the prompt that made it.
        assert any("lighthouse" in prompt for prompt in image["prompts"]), image["prompts"]


def test_the_demo_prints_the_contact_sheet_of_the_daily_images(demo_run):
    proc, demo_dir = demo_run

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = re.search(r"contact sheet of mj_daily_content \(4 images; open it in a browser\):\s+(\S+index\.html)",
                        proc.stdout)
    assert printed, proc.stdout[-2000:]
    sheet = Path(printed.group(1))
    assert sheet.parent.parent == demo_dir / "output" / "mj_daily_content"
    page = sheet.read_text()
    images = sorted(p.name for p in sheet.parent.glob("*.png"))
    assert images == ["00.png", "01.png", "02.png", "03.png"]
    for name in images:
        assert f'<img src="{name}"' in page and f'<a href="{name}">' in page
    assert page.count('<p class="prompt">') == 4


def test_the_flagship_dag_log_has_no_warning_or_error_in_a_clean_run(demo_run):
    proc, demo_dir = demo_run
    assert proc.returncode == 0, proc.stdout[-3000:]
    log_text = (demo_dir / "logs" / "dags-test.log").read_text(encoding="utf-8", errors="replace")
    assert "[DAG TEST] running trigger in line" in log_text  # it is the run's log, not an empty file

    loud = loud_lines(log_text)
    assert loud == [], "\n".join(loud)


def test_the_log_check_catches_warning_and_error_lines():
    # The check above must be able to fail: lines as Airflow and Python print them.
    sample = "\n".join(
        [
            "2026-12-01T08:44:13.119550Z [info     ] DAG bundles loaded",
            "2026-12-01T08:44:13.119550Z [warning  ] Could not import graphviz.",
            "2026-12-01T08:44:55.591292Z [error    ] XCom not found key=return_value offset=4",
            "WARNING:root:plain logging",
            "Traceback (most recent call last):",
        ]
    )

    assert len(loud_lines(sample)) == 4
