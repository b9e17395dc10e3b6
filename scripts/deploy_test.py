#!/usr/bin/env python
"""A real local Airflow deployment runs the example DAG, checked over the REST API and in Chromium.

What it brings up, every server on 127.0.0.1 only, everything in one private temp dir:

* PostgreSQL (Debian's package; installed with apt-get when missing and we are root), a private
  cluster made with ``initdb`` and run as a non-root user, as the metadata database;
* ``airflow api-server``, ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and
  ``airflow triggerer`` as separate processes, sharing a private ``AIRFLOW_HOME``, with
  ``AIRFLOW__CORE__DAGS_FOLDER=<repo>/dags`` and ``[operators] default_deferrable = True``;
* the Midjourney emulator, with ``AIRFLOW_CONN_MIDJOURNEY_DEFAULT`` pointing at it for every process.

Then it unpauses and triggers ``mj_imagine_upscale_describe`` through the public REST API (v2,
simple auth manager, token from ``POST /auth/token``), kills the triggerer (SIGKILL, whole process
group) while tasks are deferred, starts a new one, waits for the run and asserts:

* the run succeeded and every task instance succeeded;
* every Midjourney task instance was seen ``deferred`` by the API, and its trigger (a row of the
  ``trigger`` table, class ``MidjourneyTaskTrigger``) was picked up by a triggerer job; the
  triggers in flight at the kill were resumed by the *new* triggerer job;
* the emulator saw exactly one imagine, four action and four describe submissions (no duplicate
  after the restart);
* the output folder holds the four images and ``manifest.json``; the "Midjourney image" extra link
  of ``imagine`` points at the image (API);
* headless Chromium (Debian's, driven by playwright-core from ``tests/deploy/browser``) logs into
  the UI, sees our connection form fields and the extra link; screenshots go to
  ``test-artifacts/deploy/``;
* every listening socket of every process the deployment started is bound to 127.0.0.1.

Everything is torn down at the end, even on failure or Ctrl-C: each child runs in its own process
group, and at the end every process carrying this run's marker in its environment is killed.

Exit codes: 0 all checks passed, 1 a check failed, 77 a prerequisite outside the project is missing
and cannot be installed here (e.g. not root and no PostgreSQL server). ``--report FILE`` writes a
JSON report (the pytest test in ``tests/deploy`` reads it).

Standard library plus what the venv has (Airflow brings requests and psutil); the PostgreSQL
driver ``psycopg[binary]`` is pip-installed into the running interpreter's environment if missing.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = REPO_ROOT / "tests" / "deploy" / "browser"
DEFAULT_ARTIFACTS = REPO_ROOT / "test-artifacts" / "deploy"
DEFAULT_DAG_ID = "mj_imagine_upscale_describe"
EXIT_SKIP = 77
MARKER_ENV = "MJ_DEPLOY_TEST_RUN"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: What the example DAG must submit, exactly once each (no duplicate after the triggerer restart).
EXPECTED_SUBMITS = {"imagine": 1, "action": 4, "describe": 4}
#: Labels our connection type adds to the connection form (get_provider_info.CONNECTION_FIELDS + relabeling).
EXPECTED_CONN_LABELS = ["Base URL", "API Key", "Auth header style", "Speed mode"]

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[deploy-test {time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


class Unavailable(Exception):
    """A prerequisite outside the project is missing and cannot be installed: skip, don't fail."""


class CheckFailed(AssertionError):
    pass


# --------------------------------------------------------------------------------------------
# prerequisites
# --------------------------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def apt_install(*packages: str) -> None:
    """``apt-get install`` (root only); runs ``apt-get update`` once if the first try fails."""
    if not _is_root() or not shutil.which("apt-get"):
        raise Unavailable(f"{' '.join(packages)} missing, and no root/apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", *packages]
    log(f"installing Debian packages: {' '.join(packages)}")
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode != 0:
        subprocess.run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"], env=env,
                       stdout=subprocess.DEVNULL, check=False)
        res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if res.returncode != 0:
            raise Unavailable(f"apt-get install {' '.join(packages)} failed: {res.stderr[-2000:]}")


def find_pg_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def ensure_postgres() -> Path:
    pg_bin = find_pg_bin()
    if pg_bin is None:
        apt_install("postgresql")
        pg_bin = find_pg_bin()
    if pg_bin is None:
        raise Unavailable("PostgreSQL server binaries (initdb, postgres) not found after install")
    return pg_bin


def ensure_pg_user() -> str | None:
    """The user PostgreSQL runs as: None (ourselves) unless we are root, which postgres refuses."""
    if not _is_root():
        return None
    import pwd

    for name in ("postgres", "mjdeploy"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "mjdeploy"],
                   check=True)
    return "mjdeploy"


def ensure_db_driver() -> str:
    """SQLAlchemy scheme for both the sync and the async engine: psycopg 3 does both."""
    import importlib

    try:
        importlib.import_module("psycopg")
    except ImportError:
        log("installing the PostgreSQL driver: pip install 'psycopg[binary]'")
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if res.returncode != 0:
            raise Unavailable(f"cannot pip install psycopg[binary]: {res.stderr[-2000:]}")
        importlib.invalidate_caches()
        importlib.import_module("psycopg")
    return "postgresql+psycopg"


def find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_browser_tools() -> tuple[str, str]:
    """Debian's chromium and node + playwright-core (npm, private node_modules). No browser download."""
    chromium = find_chromium()
    if chromium is None:
        apt_install("chromium")
        chromium = find_chromium()
    if chromium is None:
        raise Unavailable("chromium not found after install")
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        apt_install("nodejs", "npm")
        node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        raise Unavailable("node/npm not found after install")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        log("installing playwright-core into tests/deploy/browser/node_modules (npm, no browser download)")
        lock = (BROWSER_DIR / "package-lock.json").exists()
        cmd = ["npm", "ci" if lock else "install", "--no-audit", "--no-fund", "--loglevel=error"]
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        res = subprocess.run(cmd, cwd=BROWSER_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        if res.returncode != 0:
            raise Unavailable(f"npm could not install playwright-core: {res.stderr[-2000:]}")
    return chromium, node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# process management
# --------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: new session (own process group) and SIGTERM when the script dies (Linux)."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name, self.popen, self.log_path = name, popen, log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.alive():
            self.signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {timeout:.0f}s: SIGKILL")
        self.signal_group(signal.SIGKILL)  # whatever is left in its group (task runners, workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


class Deployment:
    """Everything started by one run; ``close()`` is idempotent and leaves no process behind."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.run_marker = uuid.uuid4().hex
        self.tmp = Path(tempfile.mkdtemp(prefix="mj-deploy-"))
        os.chmod(self.tmp, 0o755)
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.home = self.tmp / "airflow-home"
        self.home.mkdir()
        self.output_dir = self.tmp / "output"
        self.procs: dict[str, Proc] = {}
        self.session_ids: set[int] = set()
        self.pg: Proc | None = None
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.emulator_url = ""
        self.password = secrets.token_urlsafe(12)
        self.emulator_key = "sk-" + secrets.token_hex(8)
        self._closed = False
        self.report: dict[str, Any] = {"tmp": str(self.tmp), "checks": {}, "timings": {}}

    # ---- processes --------------------------------------------------------------------------

    def spawn(self, name: str, cmd: list[str], *, env: dict[str, str] | None = None, user: str | None = None,
              cwd: Path | None = None) -> Proc:
        log_path = self.logs / f"{name}.log"
        fh = open(log_path, "ab")
        kwargs: dict[str, Any] = {}
        if user:
            kwargs["user"] = user
            import pwd

            kwargs["group"] = pwd.getpwnam(user).pw_gid
            kwargs["extra_groups"] = []
        popen = subprocess.Popen(
            cmd,
            env=env if env is not None else self.env,
            cwd=str(cwd or self.tmp),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            **kwargs,
        )
        fh.close()
        self.session_ids.add(popen.pid)
        proc = Proc(name, popen, log_path)
        log(f"started {name} (pid {popen.pid})")
        return proc

    def airflow(self, name: str, *argv: str) -> Proc:
        proc = self.spawn(name, [sys.executable, "-m", "airflow", *argv])
        self.procs[name] = proc
        return proc

    def marked_processes(self) -> list:
        """Every live process this run started, wherever it was reparented to (psutil).

        A process belongs to the run if it is in the session of a process we spawned (each child
        is a session leader; Airflow's task and trigger runners make their own process groups but
        stay in the session) or carries the run marker in its environment (Airflow's setproctitle
        hides the environment of its own processes, hence both).
        """
        import psutil

        found = []
        for p in psutil.process_iter(["pid"]):
            if p.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(p.pid) in self.session_ids or p.environ().get(MARKER_ENV) == self.run_marker:
                    found.append(p)
        return found

    def kill_session(self, proc: Proc, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every process of ``proc``'s session (its process group and the groups
        Airflow's supervisors make for task and trigger runners)."""
        import psutil

        pids = []
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(p.pid) == proc.pid:
                    pids.append(p.pid)
                    os.kill(p.pid, sig)
        return pids

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        log("tearing down")
        # Airflow first (graceful SIGTERM to each process group), PostgreSQL last.
        for name in ("scheduler", "triggerer", "dag-processor", "api-server"):
            for key in [k for k in self.procs if k.startswith(name)]:
                self.procs[key].stop(signal.SIGTERM, timeout=20)
        for proc in self.procs.values():
            proc.stop(signal.SIGTERM, timeout=10)
        if self.pg is not None:
            self.pg.stop(signal.SIGINT, timeout=20)  # SIGINT = PostgreSQL "fast" shutdown
        # Anything else this run started, wherever it was reparented to.
        import psutil

        leftovers = self.marked_processes()
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if leftovers:
            psutil.wait_procs(leftovers, timeout=10)
        still = self.marked_processes()
        self.report["leftover_processes_killed"] = len(leftovers)
        self.report["processes_after_teardown"] = [p.pid for p in still]
        if still:
            log(f"WARNING: processes still alive after teardown: {[p.pid for p in still]}")
        if self.args.keep_tmp:
            log(f"kept {self.tmp}")
        else:
            self._save_logs()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _save_logs(self) -> None:
        """Keep the component logs as test artifacts (they are small)."""
        dest = Path(self.args.artifacts) / "logs"
        with contextlib.suppress(OSError):
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(self.logs, dest)
            task_logs = self.home / "logs"
            if task_logs.exists():
                shutil.copytree(task_logs, dest / "airflow", dirs_exist_ok=True)

    # ---- PostgreSQL -------------------------------------------------------------------------

    def start_postgres(self, pg_bin: Path, scheme: str) -> str:
        user = ensure_pg_user()
        pgdata = self.tmp / "pgdata"
        sock = self.tmp / "pgsock"
        sock.mkdir()
        pwfile = self.tmp / "pgpass"
        pg_password = secrets.token_urlsafe(16)
        pwfile.write_text(pg_password + "\n")
        pgdata.mkdir(mode=0o700)
        if user:
            import pwd

            ent = pwd.getpwnam(user)
            for path in (sock, pwfile, pgdata):
                os.chown(path, ent.pw_uid, ent.pw_gid)
        os.chmod(pwfile, 0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AIRFLOW"))}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", MJ_DEPLOY_TEST_RUN=self.run_marker)
        init = self.spawn(
            "initdb",
            [str(pg_bin / "initdb"), "-D", str(pgdata), "-U", "airflow", "--pwfile", str(pwfile),
             "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
            env=env, user=user,
        )
        if init.popen.wait(120) != 0:
            raise RuntimeError(f"initdb failed:\n{init.tail()}")
        port = free_port()
        self.pg = self.spawn(
            "postgres",
            [str(pg_bin / "postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(sock),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            env=env, user=user,
        )
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="airflow", password=pg_password,
                                     dbname="postgres", autocommit=True, connect_timeout=3) as conn:
                    conn.execute("CREATE DATABASE airflow")
                break
            except psycopg.OperationalError:
                if not self.pg.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.pg.tail()}")
                time.sleep(0.3)
        self.pg_dsn = dict(host="127.0.0.1", port=port, user="airflow", password=pg_password, dbname="airflow")
        log(f"PostgreSQL {pg_bin.parent.name} on 127.0.0.1:{port} (runs as {user or 'current user'})")
        return f"{scheme}://airflow:{pg_password}@127.0.0.1:{port}/airflow"

    def sql(self, query: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(**self.pg_dsn, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(query, params).fetchall())

    # ---- emulator ---------------------------------------------------------------------------

    def start_emulator(self) -> str:
        # All nine jobs of a run may run at once (the default of 3 would queue some: code 22).
        cmd = [sys.executable, "-m", "airflow_provider_mj.emulator", "--host", "127.0.0.1", "--port", "0",
               "--job-seconds", str(self.args.job_seconds), "--concurrency", "8", "--api-key", self.emulator_key]
        env = self._base_env()
        proc = self.spawn("emulator", cmd, env=env, cwd=REPO_ROOT)
        self.procs["emulator"] = proc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in proc.log_path.read_text(errors="replace").splitlines():
                if "listening on http://" in line:
                    url = line.split("listening on ", 1)[1].strip().rstrip("/")
                    log(f"emulator at {url} (jobs take {self.args.job_seconds}s)")
                    return url
            if not proc.alive():
                break
            time.sleep(0.2)
        raise RuntimeError(f"the emulator did not start:\n{proc.tail()}")

    def emulator_counters(self) -> dict:
        import requests

        return requests.get(f"{self.emulator_url}/_emulator/counters", timeout=10).json()

    # ---- Airflow ----------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG"))}
        env[MARKER_ENV] = self.run_marker
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def airflow_env(self, sql_conn: str) -> dict[str, str]:
        from cryptography.fernet import Fernet

        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({"admin": self.password}) + "\n")
        conn = {
            "conn_type": "midjourney",
            "host": self.emulator_url,
            "password": self.emulator_key,
            "extra": {"retry_min_wait": 0.2, "retry_max_wait": 2},
        }
        dags_folder = Path(self.args.dags_folder).resolve()
        env = self._base_env()
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "6",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "180",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sql_conn,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # A killed triggerer's triggers go to a live one once its heartbeat is this old.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_MIDJOURNEY_DEFAULT": json.dumps(conn),
            # The example DAG polls every 5 s by default; the emulator's jobs take a few seconds.
            "MJ_EXAMPLE_POLL_INTERVAL": str(self.args.poll_interval),
        })
        self.env = env
        return env

    def start_airflow(self) -> None:
        t = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, cwd=self.tmp,
                             stdout=open(self.logs / "db-migrate.log", "wb"), stderr=subprocess.STDOUT,
                             preexec_fn=_die_with_parent, timeout=600)
        if res.returncode != 0:
            raise RuntimeError("airflow db migrate failed:\n" + (self.logs / "db-migrate.log").read_text()[-4000:])
        self.report["timings"]["db_migrate_s"] = round(time.monotonic() - t, 1)
        log(f"airflow db migrate done ({time.monotonic() - t:.0f}s)")
        port = self.env["AIRFLOW__API__PORT"]
        self.airflow("api-server", "api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1")
        self.airflow("scheduler", "scheduler", "--skip-serve-logs")
        self.airflow("dag-processor", "dag-processor")
        self.start_triggerer()

    def start_triggerer(self) -> Proc:
        n = sum(1 for k in self.procs if k.startswith("triggerer"))
        name = "triggerer" if n == 0 else f"triggerer-{n + 1}"
        return self.airflow(name, "triggerer", "--skip-serve-logs")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if not proc.alive() and not getattr(proc, "expected_dead", False):
                raise RuntimeError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail(60)}")
        if self.pg is not None and not self.pg.alive():
            raise RuntimeError(f"postgres exited:\n{self.pg.tail()}")


# --------------------------------------------------------------------------------------------
# REST API client
# --------------------------------------------------------------------------------------------


class Api:
    def __init__(self, base: str, username: str, password: str):
        import requests

        self.base = base
        self.s = requests.Session()
        self.s.trust_env = False
        self.username, self.password = username, password

    def login(self) -> None:
        r = self.s.post(f"{self.base}/auth/token", json={"username": self.username, "password": self.password},
                        timeout=30)
        if r.status_code not in (200, 201):
            raise CheckFailed(f"POST /auth/token -> {r.status_code} {r.text[:300]}")
        self.s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kw) -> Any:
        r = self.s.request(method, f"{self.base}{path}", timeout=60, **kw)
        if r.status_code == 401:  # token expired: log in again once
            self.login()
            r = self.s.request(method, f"{self.base}{path}", timeout=60, **kw)
        if r.status_code not in expect:
            raise CheckFailed(f"{method} {path} -> {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)


def wait_until(what: str, fn, timeout: float, interval: float = 1.0, dep: Deployment | None = None):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if dep is not None:
            dep.check_alive()
        try:
            value = fn()
            if value:
                return value
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


def wait_healthy(dep: Deployment, timeout: float) -> dict:
    import requests

    def healthy():
        h = requests.get(f"{dep.api_url}/api/v2/monitor/health", timeout=5).json()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        if all((h.get(p) or {}).get("status") == "healthy" for p in parts):
            return h
        return None

    return wait_until("all components healthy (/api/v2/monitor/health)", healthy, timeout, dep=dep)


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

TERMINAL_RUN_STATES = {"success", "failed"}


def trigger_rows(dep: Deployment, dag_id: str, run_id: str) -> list[tuple]:
    """Triggers currently attached to task instances of the run: (task_id, map_index, trigger id, classpath, triggerer job id)."""
    return dep.sql(
        "SELECT ti.task_id, ti.map_index, t.id, t.classpath, t.triggerer_id "
        "FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = %s AND ti.run_id = %s",
        dag_id, run_id,
    )


def triggerer_jobs(dep: Deployment) -> list[tuple]:
    return dep.sql("SELECT id, state, hostname FROM job WHERE job_type = 'TriggererJob' ORDER BY id")


def run_dag(dep: Deployment, api: Api, args: argparse.Namespace) -> dict:
    dag_id = args.dag_id
    checks = dep.report["checks"]

    def parsed():
        errors = api.get("/api/v2/importErrors").get("import_errors", [])
        if errors:
            raise CheckFailed(f"import errors in the dags folder: {json.dumps(errors)[:3000]}")
        r = api.s.get(f"{api.base}/api/v2/dags/{dag_id}", timeout=30)
        return r.json() if r.status_code == 200 else None

    wait_until(f"DAG {dag_id} parsed by the dag-processor", parsed, 180, 2, dep)
    api.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    conf = {"output_dir": str(dep.output_dir)}
    run = api.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    dep.report["run_id"] = run_id
    log(f"triggered {dag_id} run {run_id!r} with conf {conf}")

    seen_deferred: dict[str, int] = {}  # "task_id[map_index]" -> polls seen deferred
    trigger_history: dict[str, dict] = {}  # key -> {"classpath", "triggerers": [...]}
    restart: dict[str, Any] = {"done": False}
    states: dict[str, str] = {}
    t_run = time.monotonic()
    deadline = t_run + args.run_timeout
    while True:
        dep.check_alive()
        if time.monotonic() > deadline:
            raise CheckFailed(f"run {run_id} not finished after {args.run_timeout}s; task states: {states}")
        run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        states = {_key(ti): ti["state"] for ti in tis["task_instances"]}
        for key, state in states.items():
            if state == "deferred":
                seen_deferred[key] = seen_deferred.get(key, 0) + 1
        for task_id, map_index, trig_id, classpath, triggerer_id in trigger_rows(dep, dag_id, run_id):
            key = _key({"task_id": task_id, "map_index": map_index})
            h = trigger_history.setdefault(key, {"classpath": classpath, "trigger_ids": [], "triggerers": []})
            if trig_id not in h["trigger_ids"]:
                h["trigger_ids"].append(trig_id)
            if triggerer_id is not None and triggerer_id not in h["triggerers"]:
                h["triggerers"].append(triggerer_id)
        if args.restart_triggerer and not restart["done"]:
            _maybe_restart_triggerer(dep, states, trigger_history, restart)
        if run["state"] in TERMINAL_RUN_STATES:
            break
        time.sleep(args.poll)
    dep.report["timings"]["run_s"] = round(time.monotonic() - t_run, 1)
    log(f"run finished: {run['state']} in {time.monotonic() - t_run:.0f}s; tasks: {states}")
    dep.report["task_states"] = states
    dep.report["seen_deferred"] = seen_deferred
    dep.report["triggers"] = trigger_history
    dep.report["triggerer_restart"] = restart
    dep.report["triggerer_jobs"] = [list(r) for r in triggerer_jobs(dep)]

    # ---- assertions -----------------------------------------------------------------------
    failures: list[str] = []

    def check(name: str, ok: bool, detail: Any = None) -> None:
        checks[name] = {"ok": bool(ok), "detail": detail}
        log(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail is not None and not ok else ""))
        if not ok:
            failures.append(f"{name}: {detail}")

    check("run succeeded", run["state"] == "success", run["state"])
    check("every task instance succeeded", bool(states) and all(s == "success" for s in states.values()), states)

    waiting = [k for k in states if _base(k) in args.deferring_tasks]
    check("the waiting tasks exist", len(waiting) >= len(args.deferring_tasks), waiting)
    not_deferred = [k for k in waiting if k not in seen_deferred]
    check("every waiting task was seen in state 'deferred' (REST API)", not not_deferred,
          {"never_seen_deferred": not_deferred, "seen": seen_deferred})
    no_trigger = [k for k in waiting if not trigger_history.get(k, {}).get("triggerers")]
    check("every waiting task's trigger was picked up by a triggerer job (trigger table)", not no_trigger,
          {"without_triggerer": no_trigger})
    classes = sorted({h["classpath"] for h in trigger_history.values()})
    if args.trigger_class:
        check("triggers are of the provider's trigger class", classes == [args.trigger_class], classes)

    if args.restart_triggerer:
        check("triggerer was killed while tasks were deferred and restarted", restart.get("done"), restart)
        if restart.get("done"):
            old, new = restart["old_triggerer_jobs"], restart["new_triggerer_job"]
            moved = {k: trigger_history[k]["triggerers"] for k in restart["deferred_at_kill"] if k in trigger_history}
            not_moved = [k for k, ids in moved.items() if new not in ids]
            check("triggers in flight at the kill were resumed by the new triggerer job", not not_moved and moved,
                  {"old_jobs": old, "new_job": new, "triggerers_per_task": moved})

    if args.expect_counters:
        counters = dep.emulator_counters()
        dep.report["emulator_counters"] = counters
        submits = counters.get("submits", {})
        got = {k: submits.get(k, 0) for k in EXPECTED_SUBMITS}
        check("emulator submits: imagine 1, action 4, describe 4 (no duplicates)", got == EXPECTED_SUBMITS,
              {"submits": submits})

    if args.expect_images:
        images = sorted(p.name for p in dep.output_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        dep.report["output_files"] = sorted(str(p.relative_to(dep.output_dir)) for p in dep.output_dir.rglob("*") if p.is_file())
        check(f"{args.expect_images} images saved in the output folder", len(images) >= args.expect_images,
              dep.report["output_files"])
        manifest_path = dep.output_dir / "manifest.json"
        manifest = None
        with contextlib.suppress(Exception):
            manifest = json.loads(manifest_path.read_text())
        check("manifest.json lists the images", bool(manifest) and len(manifest.get("images", [])) == args.expect_images
              and all(Path(i["path"].replace("file://", "")).exists() for i in manifest["images"]),
              manifest)
        # The images are real PNGs, as served by the emulator.
        bad = [n for n in images if not (dep.output_dir / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
        check("saved images are PNG files", not bad, bad)

    if args.link_task:
        links = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{args.link_task}/links")
        dep.report["imagine_links"] = links
        url = ((links or {}).get("extra_links") or {}).get("Midjourney image")
        check(f"'{args.link_task}' has the 'Midjourney image' extra link (REST API)",
              bool(url) and url.startswith(dep.emulator_url), links)
        dep.report["image_url"] = url
        if url:
            import requests

            r = requests.get(url, timeout=10)
            check("the extra link's URL serves an image", r.ok and r.content[:4] == b"\x89PNG",
                  f"{r.status_code} {r.headers.get('content-type')}")

    # Deferral shows in the task's own log too: the worker's lines, then the triggerer's (one
    # file per triggerer job that ran the trigger: both jobs for a trigger moved by the restart).
    if waiting:
        key = (restart.get("deferred_at_kill") or waiting)[0]
        task_id, map_index = _split(key)
        ti = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                     + (f"/{map_index}" if map_index >= 0 else ""))
        content = api.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{ti['try_number']}",
            params={"map_index": map_index, "full_content": "true"}, headers={"Accept": "application/json"},
        )
        (Path(args.artifacts) / "sample_task_log.json").write_text(json.dumps(content, indent=1))
        events = [str(e.get("event", "")) for e in content.get("content", []) if isinstance(e, dict)]
        sources = [e for e in events if ".trigger." in e and e.endswith(".log")]
        deferred = any("Pausing task as DEFERRED" in e for e in events)
        fired = any(e == "Trigger fired event" for e in events)
        check(f"task log of {key} shows 'Pausing task as DEFERRED' and 'Trigger fired event' (REST API)",
              deferred and fired, {"deferred": deferred, "fired": fired})
        if restart.get("done") and key in restart.get("deferred_at_kill", []):
            jobs = sorted({int(src.rsplit(".trigger.", 1)[1].split(".")[0]) for src in sources})
            # Informational: the killed triggerer may die before it writes its part of the log.
            dep.report["sample_task_log_trigger_jobs"] = {"key": key, "jobs": jobs}
            check(f"task log of {key} has trigger logs from the new triggerer job",
                  restart["new_triggerer_job"] in jobs, {"trigger_log_files_from_jobs": jobs})

    dep.report["failures"] = failures
    return {"run_id": run_id, "failures": failures}


def _key(ti: dict) -> str:
    mi = ti.get("map_index", -1)
    return ti["task_id"] if mi is None or mi < 0 else f"{ti['task_id']}[{mi}]"


def _base(key: str) -> str:
    return key.split("[", 1)[0]


def _split(key: str) -> tuple[str, int]:
    if "[" in key:
        t, mi = key[:-1].split("[")
        return t, int(mi)
    return key, -1


def _maybe_restart_triggerer(dep: Deployment, states: dict, trigger_history: dict, restart: dict) -> None:
    """Kill the triggerer once a mapped task's trigger (or any, for unmapped DAGs) is running in it."""
    running = {k for k, h in trigger_history.items() if h["triggerers"] and states.get(k) == "deferred"}
    mapped = {k for k in running if "[" in k}
    has_mapped = any("[" in k for k in states)
    targets = mapped if has_mapped else running
    if not targets:
        return
    if has_mapped and len(mapped) < 2 and not restart.get("waited"):
        restart["waited"] = True  # one more poll, so that several mapped triggers are in flight
        return
    old = [p for k, p in dep.procs.items() if k.startswith("triggerer")][-1]
    old_jobs = sorted({j for k in running for j in trigger_history[k]["triggerers"]})
    log(f"killing the triggerer (SIGKILL to its process group, pid {old.pid}) while {sorted(running)} are deferred")
    old.expected_dead = True
    killed = dep.kill_session(old, signal.SIGKILL)
    restart["killed_pids"] = killed
    with contextlib.suppress(subprocess.TimeoutExpired):
        old.popen.wait(10)
    restart.update(done=True, killed_at=time.strftime("%H:%M:%S"), deferred_at_kill=sorted(running),
                   old_triggerer_jobs=old_jobs)
    time.sleep(1)
    dep.start_triggerer()

    def new_job():
        rows = dep.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' ORDER BY id DESC")
        ids = [r[0] for r in rows if r[0] not in old_jobs]
        return ids[0] if ids else None

    restart["new_triggerer_job"] = wait_until("the new triggerer job", new_job, 120, 0.5, dep)
    log(f"new triggerer job {restart['new_triggerer_job']} started (old jobs {old_jobs})")


# --------------------------------------------------------------------------------------------
# sockets and browser
# --------------------------------------------------------------------------------------------


def check_loopback_only(dep: Deployment) -> None:
    """Every listening TCP/UDP socket of every process of the deployment is on 127.0.0.1."""
    import psutil

    owned = {p.pid: p for p in dep.marked_processes()}
    listening = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in owned and (c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr)):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(owned[c.pid].cmdline()[:3])[:90]
                listening.append((c.pid, cmd, c.laddr.ip, c.laddr.port))
    listening = sorted(set(listening))
    dep.report["listening_sockets"] = listening
    bad = [entry for entry in listening if entry[2] != "127.0.0.1"]
    expected_ports = {int(dep.env["AIRFLOW__API__PORT"]), dep.pg_dsn["port"]}
    missing = expected_ports - {entry[3] for entry in listening}
    ok = not bad and not missing
    detail = {"non_loopback": bad, "expected_ports_not_found": sorted(missing)}
    dep.report["checks"]["every server listens on 127.0.0.1 only"] = {"ok": ok, "detail": detail}
    log(f"{'PASS' if ok else 'FAIL'} every server listens on 127.0.0.1 only ({len(listening)} sockets: "
        + ", ".join(f"{e[1].split()[-1] if e[1] else e[0]}@{e[2]}:{e[3]}" for e in listening) + ")"
        + ("" if ok else f": {detail}"))
    if not ok:
        dep.report.setdefault("failures", []).append(f"listening sockets: {detail}")


def run_browser(dep: Deployment, args: argparse.Namespace, chromium: str, node: str) -> None:
    artifacts = Path(args.artifacts)
    cfg = {
        "baseUrl": dep.api_url,
        "username": "admin",
        "password": dep.password,
        "dagId": args.dag_id,
        "runId": dep.report.get("run_id"),
        "linkTask": args.link_task,
        "expectedLink": dep.report.get("image_url"),
        "connType": "midjourney",
        "expectedLabels": EXPECTED_CONN_LABELS,
        "chromium": chromium,
        "userDataDir": str(dep.tmp / "chromium-profile"),
        "artifacts": str(artifacts),
    }
    env = dict(os.environ, MJ_DEPLOY_TEST_RUN=dep.run_marker, NO_PROXY="127.0.0.1,localhost")
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env[k]
    res = subprocess.run([node, str(BROWSER_DIR / "check_ui.js"), json.dumps(cfg)], cwd=BROWSER_DIR, env=env,
                         capture_output=True, text=True, timeout=args.browser_timeout, preexec_fn=_die_with_parent)
    (dep.logs / "browser.log").write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
    result: dict[str, Any] = {}
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            break
    dep.report["browser"] = result
    for name, c in (result.get("checks") or {}).items():
        dep.report["checks"][f"browser: {name}"] = c
        log(f"{'PASS' if c['ok'] else 'FAIL'} browser: {name}" + ("" if c["ok"] else f": {c.get('detail')}"))
        if not c["ok"]:
            dep.report.setdefault("failures", []).append(f"browser: {name}: {c.get('detail')}")
    if res.returncode != 0 or not result.get("checks"):
        dep.report.setdefault("failures", []).append(
            f"browser check exited {res.returncode}: {(res.stderr or res.stdout)[-1500:]}")
        log(f"FAIL browser check exited {res.returncode}: {(res.stderr or res.stdout)[-1500:]}")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dag-id", default=DEFAULT_DAG_ID)
    p.add_argument("--dags-folder", default=str(REPO_ROOT / "dags"))
    p.add_argument("--job-seconds", type=float, default=8.0,
                   help="emulator job duration: long enough to kill the triggerer while tasks are deferred")
    p.add_argument("--poll-interval", type=float, default=1.0, help="MJ_EXAMPLE_POLL_INTERVAL for the DAG")
    p.add_argument("--poll", type=float, default=1.0, help="how often this script polls the REST API")
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--browser-timeout", type=float, default=180.0)
    p.add_argument("--no-restart-triggerer", dest="restart_triggerer", action="store_false")
    p.add_argument("--no-browser", dest="browser", action="store_false")
    p.add_argument("--deferring-tasks", default="imagine,upscale,describe",
                   help="comma-separated task ids that must go through the triggerer")
    p.add_argument("--trigger-class", default="airflow_provider_mj.triggers.midjourney.MidjourneyTaskTrigger")
    p.add_argument("--link-task", default="imagine", help="task whose 'Midjourney image' link is checked ('' = skip)")
    p.add_argument("--expect-images", type=int, default=4, help="images expected in output_dir (0 = skip)")
    p.add_argument("--no-counters", dest="expect_counters", action="store_false")
    p.add_argument("--no-emulator", dest="emulator", action="store_false",
                   help="don't start the emulator (only to smoke-test the deployment with another DAG)")
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="screenshots, logs, report")
    p.add_argument("--report", help="write the JSON report here too")
    p.add_argument("--hold", type=float, default=0, help="keep the deployment up this long before the browser check (debugging)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, pgdata) for debugging")
    args = p.parse_args(argv)
    args.deferring_tasks = [t for t in args.deferring_tasks.split(",") if t]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    for old in Path(args.artifacts).glob("*.png"):
        old.unlink()
    report: dict[str, Any] = {"status": "error"}

    def write_report() -> None:
        text = json.dumps(report, indent=2, default=str)
        (Path(args.artifacts) / "report.json").write_text(text)
        if args.report:
            Path(args.report).write_text(text)

    # Die cleanly (finally blocks run) on SIGTERM/SIGHUP, and with our parent (pytest) if it dies.
    def _on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    try:
        pg_bin = ensure_postgres()
        scheme = ensure_db_driver()
        chromium = node = None
        if args.browser:
            chromium, node = ensure_browser_tools()
    except Unavailable as exc:
        report.update(status="skipped", reason=str(exc))
        write_report()
        log(f"SKIP: {exc}")
        return EXIT_SKIP

    dep = Deployment(args)
    atexit.register(dep.close)
    report = dep.report
    report["status"] = "error"
    try:
        sql_conn = dep.start_postgres(pg_bin, scheme)
        dep.emulator_url = dep.start_emulator() if args.emulator else "http://127.0.0.1:9"
        dep.airflow_env(sql_conn)
        dep.start_airflow()
        t = time.monotonic()
        wait_healthy(dep, timeout=240)
        report["timings"]["healthy_after_start_s"] = round(time.monotonic() - t, 1)
        log("all components healthy")
        api = Api(dep.api_url, "admin", dep.password)
        api.login()
        run_dag(dep, api, args)
        check_loopback_only(dep)
        if args.hold:
            (dep.tmp / "deployment.json").write_text(json.dumps(
                {"api_url": dep.api_url, "password": dep.password, "run_id": report.get("run_id"),
                 "image_url": report.get("image_url"), "emulator_url": dep.emulator_url}))
            log(f"holding the deployment for {args.hold:.0f}s: {dep.tmp / 'deployment.json'}")
            time.sleep(args.hold)
        if args.browser:
            run_browser(dep, args, chromium, node)
        report["status"] = "failed" if report.get("failures") else "passed"
    except (CheckFailed, RuntimeError) as exc:
        report.setdefault("failures", []).append(str(exc))
        report["status"] = "failed"
        log(f"FAIL: {exc}")
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit included: tear down, report
        report.setdefault("failures", []).append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        report["status"] = "error"
        log(f"ERROR: {exc!r}")
        traceback.print_exc()
    finally:
        if report["status"] != "passed":
            for name, proc in list(dep.procs.items()) + ([("postgres", dep.pg)] if dep.pg else []):
                log(f"--- last lines of {name} log ---\n{proc.tail(25)}")
        dep.close()
        report["total_s"] = round(time.monotonic() - _T0, 1)
        write_report()
    log(f"{report['status'].upper()} in {report['total_s']:.0f}s; artifacts in {args.artifacts}")
    return 0 if report["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
