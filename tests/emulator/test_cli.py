"""The mj-emulator command and python -m airflow_provider_mj.emulator."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

from airflow_provider_mj.emulator.cli import build_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[2]


def test_console_script_points_at_cli_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["mj-emulator"] == "airflow_provider_mj.emulator.cli:main"


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "airflow_provider_mj.emulator", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--host", "--port", "--job-seconds", "--dialect", "--api-key", "--concurrency",
                 "--queue-limit", "--banned-word", "--fail-word", "--seed", "--fault-drop", "--fault-lost-reply"):
        assert flag in out


def test_flags_become_settings():
    args = build_parser().parse_args(["--dialect", "relay", "--job-seconds", "0.5", "--banned-word", "x",
                                      "--banned-word", "y", "--fault-drop", "0.25", "--seed", "3"])
    settings = settings_from_args(args)
    assert settings.dialect == "relay" and settings.job_seconds == 0.5
    assert settings.banned_words == ("x", "y") and settings.faults.drop == 0.25 and settings.faults.seed == 3
    assert settings.host == "127.0.0.1"
    assert settings_from_args(build_parser().parse_args(["--no-banned-words"])).banned_words == ()


@pytest.fixture
def served():
    procs = []

    def start(*flags):
        proc = subprocess.Popen([sys.executable, "-m", "airflow_provider_mj.emulator", "--port", "0", *flags],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(proc)
        line = proc.stdout.readline()
        m = re.match(r"Midjourney emulator listening on (http://127\.0\.0\.1:\d+)$", line.strip())
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        return m.group(1), proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_python_m_serves_with_the_given_flags(served):
    base, _ = served("--dialect", "relay", "--api-key", "K", "--job-seconds", "0.1")
    assert requests.post(base + "/mj/submit/imagine", json={"prompt": "x"}).status_code == 401
    reply = requests.post(base + "/mj/submit/imagine", json={"prompt": "x"}, headers={"Authorization": "Bearer K"})
    task_id = reply.json()["result"]
    time.sleep(0.2)
    task = requests.get(f"{base}/mj/task/{task_id}/fetch", headers={"mj-api-secret": "K"}).json()
    assert task["status"] == "SUCCESS" and task["properties"] == {"finalPrompt": "x"}


def test_dropped_connections_do_not_spam_the_log(served):
    base, proc = served("--fault-drop", "1")
    for _ in range(3):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(base + "/mj/task/1/fetch")
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert "ASGI callable" not in err and "Traceback" not in err


def test_help_gives_each_option_one_default():
    out = subprocess.run([sys.executable, "-m", "airflow_provider_mj.emulator", "--help"],
                         capture_output=True, text=True, check=True).stdout
    options = re.split(r"\n  (?=-)", out.split("options:", 1)[1])

    for option in options:
        assert " ".join(option.split()).lower().count("default") <= 1, option
    text = " ".join(out.split())
    assert "(default: None)" not in text and "default $MJ_EMULATOR_API_KEY" in text
    assert "--port PORT port to bind; 0 picks a free one (default: 8080)" in text


def test_the_cli_reports_the_port_it_got_for_port_0(served):
    base, _ = served()

    assert requests.get(base + "/_emulator/config").json()["port"] == int(base.rsplit(":", 1)[1])


def test_an_in_process_emulator_reports_the_port_it_got():
    from airflow_provider_mj.emulator import start_emulator

    with start_emulator(job_seconds=0.1) as emu:
        assert emu.port != 0
        assert emu.settings.port == emu.port
        assert emu.configure(job_seconds=0.2)["port"] == emu.port
