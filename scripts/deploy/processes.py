"""The deployment's processes: PostgreSQL, Redis, the emulator and the Airflow components.

Every child runs in its own session (``setsid``) and gets SIGTERM if this script dies; at the end
every process in one of those sessions, or carrying this run's marker in its environment, is
killed. Every server binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .api import wait_until
from .common import LOCAL_HTTP, MARKER_ENV, REPO_ROOT, TEST_DAGS_DIR, free_port, log
from .prereqs import ensure_service_user

_PR_SET_PDEATHSIG = 1
#: The flagship example DAG, copied from dags/ into the celery profile's DAGs folder.
FLAGSHIP_DAG_FILE = REPO_ROOT / "dags" / "mj_imagine_upscale_describe.py"


def sigterm_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent() -> None:
    """preexec_fn: new session (own process group) and SIGTERM when the script dies (Linux)."""
    os.setsid()
    sigterm_with_parent()


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name, self.popen, self.log_path = name, popen, log_path
        #: Set when the test kills it on purpose (check_alive then leaves it alone).
        self.expected_dead = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-n:])

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
    """Everything started by one run; ``close()`` is idempotent and leaves no process behind.

    ``args.profile`` picks the shape: ``local`` (LocalExecutor, one triggerer) or ``celery``
    (CeleryExecutor with Redis and two Celery workers, two triggerers).
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.celery = args.profile == "celery"
        self.run_marker = uuid.uuid4().hex
        self.tmp = Path(tempfile.mkdtemp(prefix="mj-deploy-"))
        os.chmod(self.tmp, 0o755)
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.home = self.tmp / "airflow-home"
        self.home.mkdir()
        self.output_dir = self.tmp / "output"
        self.procs: dict[str, Proc] = {}
        #: Triggerer job id (the ``job`` table) -> the process running it, in the order started.
        self.triggerers: dict[int, Proc] = {}
        self.session_ids: set[int] = set()
        self.pg: Proc | None = None
        self.redis: Proc | None = None
        self.redis_port = 0
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.emulator_url = ""
        self.password = secrets.token_urlsafe(12)
        self.emulator_key = "sk-" + secrets.token_hex(8)
        self._closed = False
        self.report: dict[str, Any] = {"profile": args.profile, "tmp": str(self.tmp), "checks": {},
                                       "failures": [], "timings": {}}

    # ---- processes --------------------------------------------------------------------------

    def spawn(self, name: str, cmd: list[str], *, env: dict[str, str] | None = None, user: str | None = None,
              cwd: Path | None = None) -> Proc:
        log_path = self.logs / f"{name}.log"
        fh = open(log_path, "ab")
        kwargs: dict[str, Any] = {}
        if user:
            kwargs.update(user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[])
        popen = subprocess.Popen(
            cmd, env=env if env is not None else self.env, cwd=str(cwd or self.tmp), stdin=subprocess.DEVNULL,
            stdout=fh, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, **kwargs,
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

    def session_of(self, pid: int) -> Proc | None:
        """The spawned process whose session ``pid`` belongs to (a task runner -> its Celery worker)."""
        with contextlib.suppress(OSError):
            sid = os.getsid(pid)
            for proc in self.procs.values():
                if proc.pid == sid:
                    return proc
        return None

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

    def kill_on_purpose(self, proc: Proc) -> list[int]:
        """SIGKILL ``proc``'s whole session, as a crashed host would lose it; wait for it to go."""
        proc.expected_dead = True
        killed = self.kill_session(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(10)
        return killed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A second SIGTERM or Ctrl-C must not cut the teardown short (leaving processes and the
        # temp dir behind, with close() already marked done): such signals wait until it is over.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
        try:
            self._teardown()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _teardown(self) -> None:
        log("tearing down")
        # Airflow first (graceful SIGTERM to each process group), the Celery broker and PostgreSQL last.
        for name in ("scheduler", "celery-worker", "triggerer", "dag-processor", "api-server"):
            for key in [k for k in self.procs if k.startswith(name)]:
                self.procs[key].stop(signal.SIGTERM, timeout=20)
        for proc in self.procs.values():
            proc.stop(signal.SIGTERM, timeout=10)
        if self.redis is not None:
            self.redis.stop(signal.SIGTERM, timeout=10)
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

    @staticmethod
    def _give(path: Path, user: str | None) -> Path:
        """Hand ``path`` to the user PostgreSQL and Redis run as (None: we run them ourselves)."""
        if user:
            shutil.chown(path, user, pwd.getpwnam(user).pw_gid)
        return path

    def _own_dir(self, path: Path, user: str | None, mode: int = 0o700) -> Path:
        path.mkdir(mode=mode)
        return self._give(path, user)

    def _base_env(self) -> dict[str, str]:
        """Every child's environment: ours without AIRFLOW*/PG* settings, with the run's marker."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG"))}
        env.update({
            MARKER_ENV: self.run_marker,
            "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        return env

    # ---- PostgreSQL -------------------------------------------------------------------------

    def start_postgres(self, pg_bin: Path, scheme: str) -> str:
        user = ensure_service_user()
        pgdata = self._own_dir(self.tmp / "pgdata", user)
        sock = self._own_dir(self.tmp / "pgsock", user, 0o755)
        pwfile = self.tmp / "pgpass"
        pg_password = secrets.token_urlsafe(16)
        pwfile.write_text(pg_password + "\n")
        os.chmod(pwfile, 0o600)
        self._give(pwfile, user)
        env = self._base_env()
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

    # ---- Redis (the Celery broker) ----------------------------------------------------------

    def start_redis(self, binary: str) -> str:
        """Our own redis-server: loopback only, a private config and dir, no persistence."""
        user = ensure_service_user()
        data = self._own_dir(self.tmp / "redis", user)
        self.redis_port = free_port()
        conf = self.tmp / "redis.conf"
        conf.write_text("\n".join([
            "bind 127.0.0.1", f"port {self.redis_port}", "protected-mode yes", "daemonize no",
            "supervised no", f"dir {data}", 'save ""', "appendonly no", 'logfile ""', "databases 2",
        ]) + "\n")
        os.chmod(conf, 0o644)
        self.redis = self.spawn("redis", [binary, str(conf)], env=self._base_env(), user=user)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            if not self.redis.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.redis.tail()}")
            time.sleep(0.2)
        log(f"Redis on 127.0.0.1:{self.redis_port} (pid {self.redis.pid}, runs as {user or 'current user'})")
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # ---- emulator ---------------------------------------------------------------------------

    def start_emulator(self) -> str:
        # All nine jobs of the example DAG may run at once (the default of 3 would queue some: code 22).
        cmd = [sys.executable, "-m", "airflow_provider_mj.emulator", "--host", "127.0.0.1", "--port", "0",
               "--job-seconds", str(self.args.job_seconds), "--concurrency", "8", "--api-key", self.emulator_key]
        proc = self.spawn("emulator", cmd, env=self._base_env(), cwd=REPO_ROOT)
        self.procs["emulator"] = proc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in proc.text().splitlines():
                if "listening on http://" in line:
                    url = line.split("listening on ", 1)[1].strip().rstrip("/")
                    log(f"emulator at {url} (jobs take {self.args.job_seconds}s)")
                    return url
            if not proc.alive():
                break
            time.sleep(0.2)
        raise RuntimeError(f"the emulator did not start:\n{proc.tail()}")

    def emulator_counters(self) -> dict:
        return LOCAL_HTTP.get(f"{self.emulator_url}/_emulator/counters", timeout=10).json()

    def configure_emulator(self, **settings: Any) -> dict:
        """Change the emulated account between phases (job length, slots, queue places)."""
        r = LOCAL_HTTP.post(f"{self.emulator_url}/_emulator/config", json=settings, timeout=10)
        r.raise_for_status()
        log(f"emulator account now {settings}")
        return r.json()

    # ---- Airflow ----------------------------------------------------------------------------

    def dags_folder(self) -> Path:
        """local: the repo's dags/ (or --dags-folder); celery: the flagship DAG plus tests/deploy/dags."""
        if not self.celery:
            return Path(self.args.dags_folder).resolve()
        folder = self.tmp / "dags"
        folder.mkdir()
        shutil.copy2(FLAGSHIP_DAG_FILE, folder / FLAGSHIP_DAG_FILE.name)
        for path in sorted(TEST_DAGS_DIR.glob("*.py")):
            shutil.copy2(path, folder / path.name)
        return folder

    def airflow_env(self, sql_conn: str, broker_url: str | None = None) -> dict[str, str]:
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
        env = self._base_env()
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder()),
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
            # On two cores shared with other test runs, the one API server worker sometimes takes
            # more than the default 5 s to answer a task's start; a timeout there fails the try
            # before it runs (seen: ReadTimeout in supervisor start, task failed with no log).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
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
        if self.celery:
            env.update(self._celery_env(sql_conn, broker_url))
        self.env = env
        return env

    def _celery_env(self, sql_conn: str, broker_url: str | None) -> dict[str, str]:
        args = self.args
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            # Two workers of --worker-concurrency slots each; the scheduler may queue that many.
            "AIRFLOW__CORE__PARALLELISM": str(2 * args.worker_concurrency),
            "AIRFLOW__CELERY__BROKER_URL": broker_url or "",
            # Airflow's recommended result backend: the metadata database (celery<5.7, see pyproject).
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql_conn,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(args.worker_concurrency),
            # A task whose worker died stops heartbeating; past this many seconds the scheduler
            # fails the try and Airflow retries it (300 s by default).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(args.task_heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # Read by the burst DAG (tests/deploy/dags/mj_deploy_burst.py).
            "MJ_DEPLOY_BURST_SIZE": str(args.burst_size),
            "MJ_DEPLOY_BURST_POOL": "midjourney" if args.burst_pool_slots > 0 else "",
            "MJ_DEPLOY_BURST_POLL_INTERVAL": str(args.burst_poll_interval),
        }

    def start_airflow(self) -> None:
        t = time.monotonic()
        with open(self.logs / "db-migrate.log", "wb") as out:
            res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, cwd=self.tmp,
                                 stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, timeout=600)
        if res.returncode != 0:
            raise RuntimeError("airflow db migrate failed:\n" + (self.logs / "db-migrate.log").read_text()[-4000:])
        self.report["timings"]["db_migrate_s"] = round(time.monotonic() - t, 1)
        log(f"airflow db migrate done ({time.monotonic() - t:.0f}s)")
        port = self.env["AIRFLOW__API__PORT"]
        self.airflow("api-server", "api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1")
        self.airflow("scheduler", "scheduler", "--skip-serve-logs")
        self.airflow("dag-processor", "dag-processor")
        if self.celery:
            for n in (1, 2):
                self.start_celery_worker(n)
        for _ in range(2 if self.celery else 1):  # local: one (replaced mid-run if asked); celery: two
            self.start_triggerer()

    def start_triggerer(self) -> tuple[int, Proc]:
        """Start one more triggerer and wait for its triggerer job; (job id, process).

        Started one at a time, so the one new job in the ``job`` table is this process's.
        """
        known = {r[0] for r in self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob'")}
        n = len(self.triggerers)
        capacity = ("--capacity", str(self.args.triggerer_capacity)) if self.celery else ()
        proc = self.airflow("triggerer" if n == 0 else f"triggerer-{n + 1}", "triggerer", "--skip-serve-logs",
                            *capacity)

        def new_job():
            rows = self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running'")
            return next((r[0] for r in rows if r[0] not in known), None)

        job = wait_until(f"{proc.name}'s triggerer job", new_job, 120, 0.5, self)
        self.triggerers[job] = proc
        log(f"{proc.name} is triggerer job {job}")
        return job, proc

    def start_celery_worker(self, n: int) -> Proc:
        """One Celery worker process with its own node name (two on one host need distinct names)."""
        return self.airflow(f"celery-worker-{n}", "celery", "worker", "--celery-hostname", f"worker{n}@%h",
                            "--concurrency", str(self.args.worker_concurrency), "--skip-serve-logs",
                            "--without-mingle", "--without-gossip")

    def celery_workers(self) -> dict[str, Proc]:
        return {k: p for k, p in self.procs.items() if k.startswith("celery-worker")}

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if not proc.alive() and not proc.expected_dead:
                raise RuntimeError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail(60)}")
        for name, proc in (("postgres", self.pg), ("redis", self.redis)):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{name} exited:\n{proc.tail()}")
