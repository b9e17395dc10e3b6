"""Run the main example DAG end to end against the local emulator, offline, in about a minute.

    .venv/bin/python scripts/demo.py [--job-seconds 3] [--poll-interval 1] [--prompt "..."] [--demo-dir .demo]

What it does, touching nothing outside its demo folder (``<repo>/.demo`` unless ``--demo-dir``):

1. starts the Midjourney emulator on 127.0.0.1 (a free port) as a subprocess;
2. prepares an Airflow home in ``<demo folder>/airflow-home`` (SQLite, the repo's ``dags/`` folder,
   deferrable operators on, ``midjourney_default`` pointing at the emulator) and migrates its
   database (idempotent);
3. runs ``airflow dags test mj_imagine_upscale_describe`` with the output folder as run conf;
   ``dags test`` runs each deferred task's trigger in-process, so the waits really go through
   the trigger;
4. runs ``mj_daily_content`` on four prompts (the upscales save themselves and publish asset
   events), then ``mj_contact_sheet``, which writes the HTML contact sheet of that day from the
   events' extras;
5. stops the emulator (always), checks the images, the manifest and the contact sheet, and says
   where they are.

A clean run logs nothing at warning level or above (``tests/dags/test_demo.py`` reads the log).

Standard library only (plus Airflow and this package, run as subprocesses).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEMO_DIR = REPO / ".demo"
DAG_ID = "mj_imagine_upscale_describe"
DAILY_DAG_ID = "mj_daily_content"
SHEET_DAG_ID = "mj_contact_sheet"
DAILY_PROMPTS = 4
API_KEY = "demo-key"  # the emulator's key: shows that the connection's password is sent
BUTTONS = ("U1", "U2", "U3", "U4")
#: Midjourney jobs of one run: imagine, four upscales, four describes. Each must defer once.
EXPECTED_TRIGGER_RUNS = 9
LISTENING = re.compile(r"listening on (https?://\S+)")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


#: Two warnings Airflow itself prints on every ``airflow dags test``, whatever the DAG: its CLI
#: imports the optional ``graphviz`` (for ``dags show``), and ``dags test`` runs the execution API
#: in-process through Starlette's test client, which Starlette now deprecates. Neither says anything
#: about the run, and a user can do nothing about them, so the demo silences exactly these two
#: (message prefixes, not whole categories): any other warning still shows.
QUIET_AIRFLOW_WARNINGS = ",".join(
    (
        "ignore:Could not import graphviz:UserWarning",
        "ignore:Using `httpx` with `starlette.testclient` is deprecated:UserWarning",
    )
)


class DemoError(Exception):
    """A step failed; the message says which and where its log is."""


class DemoDirs:
    """Where one demo keeps everything: its Airflow home, the DAG's output and the logs."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.airflow_home = self.root / "airflow-home"
        self.output = self.root / "output" / DAG_ID
        self.daily_output = self.root / "output" / DAILY_DAG_ID
        self.logs = self.root / "logs"


def say(message: str = "") -> None:
    print(message, flush=True)


def clean_env() -> dict[str, str]:
    """The caller's environment without any Airflow setting, so no global state is touched.

    A user's own AIRFLOW__DATABASE__SQL_ALCHEMY_CONN or AIRFLOW_CONN_* must never reach the demo.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_") or k.startswith("AIRFLOW_VAR_")
                or k in ("AIRFLOW_HOME", "AIRFLOW_CONFIG"))
    }


def start_emulator(job_seconds: float, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start ``python -m airflow_provider_mj.emulator`` and return it with its base URL."""
    cmd = [
        sys.executable, "-m", "airflow_provider_mj.emulator",
        "--host", "127.0.0.1", "--port", "0",
        "--job-seconds", str(job_seconds),
        "--api-key", API_KEY,
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        # Drain the emulator's output for its whole life (a full pipe would block it) into a log.
        with log_path.open("w", encoding="utf-8") as log:
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="emulator-log", daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        match = LISTENING.search(line)
        if match:
            return proc, match.group(1).rstrip("/")
    stop(proc)
    raise DemoError(f"the emulator did not start (no 'listening on' line); see {log_path}")


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a child process we started: terminate, then kill if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def airflow_env(dirs: DemoDirs, base_url: str, poll_interval: float) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "AIRFLOW_HOME": str(dirs.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_MIDJOURNEY_DEFAULT": json.dumps(
                {"conn_type": "midjourney", "host": base_url, "password": API_KEY}
            ),
            # The example DAGs poll every 5 s by default (vendor advice); emulator jobs take seconds.
            "MJ_EXAMPLE_POLL_INTERVAL": str(poll_interval),
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": QUIET_AIRFLOW_WARNINGS,
        }
    )
    return env


def run_logged(cmd: list[str], env: dict[str, str], log_path: Path, *, watch=None) -> int:
    """Run ``cmd`` with its output in ``log_path``, each line also given to ``watch``."""
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                if watch is not None:
                    watch(line)
            return proc.wait()
        finally:
            stop(proc)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def first_error(path: Path) -> str:
    """The first exception line of a log (the root cause, before the fallout), or nothing."""
    pattern = re.compile(r"^\S*(Error|Exception)\b.*?: .+")
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if pattern.match(line.strip()):
            return f"cause: {line.strip()[:500]}\n"
    return ""


class Progress:
    """Condense ``airflow dags test`` output into one line per task instance.

    ``imagine      deferred -> trigger: SUBMITTED 0%, IN_PROGRESS 25%, ..., SUCCESS 100%``
    """

    START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
    END = re.compile(r"\[DAG TEST\] end task task_id=")
    TRIGGER = "[DAG TEST] running trigger in line"
    STATUS = re.compile(r"Midjourney task \d+: ([A-Z_]+) ?(\d+%)?")
    RUN_DONE = re.compile(r"DagRun Finished: .*?run_duration=([\d.]+), state=(\w+)")

    def __init__(self) -> None:
        self.task: str | None = None
        self.deferred = False
        self.statuses: list[str] = []

    def __call__(self, line: str) -> None:
        if m := self.START.search(line):
            self.flush()
            self.task = m.group(1) if m.group(2) == "-1" else f"{m.group(1)}[{m.group(2)}]"
        elif self.TRIGGER in line:
            self.deferred = True
        elif self.task and (m := self.STATUS.search(line)):
            status = " ".join(x for x in m.groups() if x)
            if not self.statuses or self.statuses[-1] != status:
                self.statuses.append(status)
        elif self.END.search(line):
            self.flush()
        elif m := self.RUN_DONE.search(line):
            self.flush()
            say(f"    DAG run {m.group(2)} in {float(m.group(1)):.0f} s")

    def flush(self) -> None:
        if self.task is None:
            return
        how = f"deferred -> trigger: {', '.join(self.statuses)}" if self.deferred else "ran"
        say(f"    {self.task + ' ':<14}{how}")
        self.task, self.deferred, self.statuses = None, False, []


def check_outputs(dirs: DemoDirs, dags_test_log: Path) -> dict:
    """Verify what the run produced; return the manifest."""
    log_text = dags_test_log.read_text(encoding="utf-8", errors="replace")
    trigger_runs = log_text.count("[DAG TEST] running trigger in line")
    if trigger_runs < EXPECTED_TRIGGER_RUNS:
        raise DemoError(
            f"only {trigger_runs} task(s) deferred to the trigger, expected {EXPECTED_TRIGGER_RUNS}: "
            f"is deferrable mode on? see {dags_test_log}"
        )
    manifest_path = dirs.output / "manifest.json"
    if not manifest_path.is_file():
        raise DemoError(f"no manifest at {manifest_path}; see {dags_test_log}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    images = manifest.get("images") or []
    if [i.get("button") for i in images] != list(BUTTONS):
        raise DemoError(f"the manifest lists {len(images)} image(s), expected {', '.join(BUTTONS)}")
    for image in images:
        path = Path(image["path"].removeprefix("file://"))
        if not path.is_file() or path.stat().st_size == 0:
            raise DemoError(f"image {image['button']} is missing or empty: {path}")
        with path.open("rb") as f:
            if f.read(8) != PNG_MAGIC:
                raise DemoError(f"image {image['button']} is not a PNG: {path}")
        if not image.get("prompts"):
            raise DemoError(f"no describe prompts for {image['button']}")
    manifest["_trigger_runs"] = trigger_runs
    return manifest


def check_contact_sheet(dirs: DemoDirs, log: Path) -> Path:
    """The day's contact sheet: it exists and shows every image the daily DAG saved next to it."""
    sheets = sorted(dirs.daily_output.glob("*/index.html"))
    if len(sheets) != 1:
        raise DemoError(f"expected one contact sheet under {dirs.daily_output}, found {len(sheets)}; see {log}")
    sheet = sheets[0]
    images = sorted(p.name for p in sheet.parent.iterdir() if p.suffix in (".png", ".webp", ".jpg"))
    page = sheet.read_text(encoding="utf-8")
    if len(images) != DAILY_PROMPTS or any(f'<img src="{name}"' not in page for name in images):
        raise DemoError(f"the contact sheet {sheet} does not show the {DAILY_PROMPTS} images next to it ({images})")
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job-seconds", type=float, default=3.0,
                        help="how long each emulated Midjourney job takes (default 3)")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="how often the trigger asks about a job (default 1 s; DAG default 5 s)")
    parser.add_argument("--prompt", default=None, help="the imagine prompt (default: the DAG's)")
    parser.add_argument("--demo-dir", type=Path, default=DEFAULT_DEMO_DIR,
                        help="the folder the demo keeps everything in (default <repo>/.demo)")
    args = parser.parse_args(argv)
    dirs = DemoDirs(args.demo_dir)

    started = time.monotonic()
    dirs.logs.mkdir(parents=True, exist_ok=True)
    dirs.airflow_home.mkdir(parents=True, exist_ok=True)
    # Each run starts from an empty output folder, so the checks below never see an older run.
    for folder in (dirs.output, dirs.daily_output):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    emulator = None
    try:
        say(f"1/5 starting the Midjourney emulator (jobs take {args.job_seconds:g} s)")
        emulator, base_url = start_emulator(args.job_seconds, dirs.logs / "emulator.log")
        say(f"    {base_url}  (log: {dirs.logs / 'emulator.log'})")
        env = airflow_env(dirs, base_url, args.poll_interval)

        say(f"2/5 preparing Airflow in {dirs.airflow_home} (airflow db migrate)")
        migrate_log = dirs.logs / "db-migrate.log"
        if run_logged([sys.executable, "-m", "airflow", "db", "migrate"], env, migrate_log) != 0:
            raise DemoError(f"airflow db migrate failed:\n{tail(migrate_log)}\n(full log: {migrate_log})")

        conf = {"output_dir": str(dirs.output)}
        if args.prompt:
            conf["prompt"] = args.prompt
        say(f"3/5 airflow dags test {DAG_ID} -c '{json.dumps(conf)}'")
        dags_test_log = dirs.logs / "dags-test.log"
        rc = run_logged(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", json.dumps(conf)],
            env, dags_test_log, watch=Progress(),
        )
        if rc != 0:
            raise DemoError(f"the DAG run failed:\n{tail(dags_test_log, 25)}\n\n{first_error(dags_test_log)}"
                            f"(full log: {dags_test_log})")

        daily_conf = json.dumps({"max_prompts": DAILY_PROMPTS, "output_dir": str(dirs.daily_output)})
        say(f"4/5 airflow dags test {DAILY_DAG_ID} -c '{daily_conf}', then {SHEET_DAG_ID}")
        for dag_id, conf_args, log in (
            (DAILY_DAG_ID, ["-c", daily_conf], dirs.logs / "dags-test-daily.log"),
            # Scheduled on the daily images' asset; run by hand here (no scheduler in a demo), it
            # rebuilds the sheet of the latest images from their asset events.
            (SHEET_DAG_ID, [], dirs.logs / "dags-test-contact-sheet.log"),
        ):
            if run_logged([sys.executable, "-m", "airflow", "dags", "test", dag_id, *conf_args], env, log,
                          watch=Progress()) != 0:
                raise DemoError(f"the {dag_id} run failed:\n{tail(log, 25)}\n\n{first_error(log)}(full log: {log})")
    except DemoError as exc:
        say(f"\nDEMO FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    finally:
        stop(emulator)

    say("5/5 emulator stopped; checking the outputs")
    try:
        manifest = check_outputs(dirs, dags_test_log)
        sheet = check_contact_sheet(dirs, dirs.logs / "dags-test-contact-sheet.log")
    except DemoError as exc:
        say(f"\nDEMO FAILED: {exc}")
        return 1

    say("")
    say(f"OK in {time.monotonic() - started:.0f} s: {manifest['_trigger_runs']} Midjourney waits went "
        f"through the trigger (deferrable mode).")
    say(f"prompt:   {manifest['prompt']}")
    for image in manifest["images"]:
        say(f"  {image['button']}  {image['path'].removeprefix('file://')}")
        say(f"      described as: {image['prompts'][0]}")
    say(f"manifest: {dirs.output / 'manifest.json'}")
    say(f"contact sheet of {DAILY_DAG_ID} ({DAILY_PROMPTS} images; open it in a browser):")
    say(f"          {sheet}")
    say(f"logs:     {dirs.logs}")
    say("")
    say("Point the same DAG at a real relay (costs real Midjourney jobs):")
    say("  export AIRFLOW_CONN_MIDJOURNEY_DEFAULT='{\"conn_type\":\"midjourney\",\"host\":\"https://<relay>\","
        "\"password\":\"<api key>\"}'")
    say(f"  airflow dags test {DAG_ID} -c '{{\"prompt\": \"...\", \"output_dir\": \"/some/folder\"}}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
