"""Prerequisites outside the venv: Debian packages (PostgreSQL, Redis, Chromium, Node.js), the DB driver.

As root (CI on a clean machine) whatever is missing is installed with ``apt-get`` (after one
``apt-get update``), ``pip`` or ``npm``; otherwise a missing piece raises :class:`Unavailable`
and the run exits 77 (skipped, with the reason).
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .common import BROWSER_DIR, Unavailable, log

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
REDIS_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
_APT_LOCK = ("-o", "DPkg::Lock::Timeout=300")
_apt_updated = False


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(*packages: str) -> None:
    """``apt-get install`` (root only), after one ``apt-get update`` per run: a clean machine's
    package lists may be empty or stale."""
    global _apt_updated
    if not is_root() or not shutil.which("apt-get"):
        raise Unavailable(f"{' '.join(packages)} missing, and no root/apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        log("apt-get update")
        subprocess.run(["apt-get", "update", "-q", *_APT_LOCK], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        _apt_updated = True
    log(f"installing Debian packages: {' '.join(packages)}")
    res = subprocess.run(["apt-get", "install", "-y", "-q", *_APT_LOCK, *packages], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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


def ensure_service_user() -> str | None:
    """The user PostgreSQL (and Redis) run as: None (ourselves) unless we are root, which postgres refuses."""
    if not is_root():
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


def _first_executable(candidates: tuple[str, ...]) -> str | None:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_redis() -> str:
    """Debian's ``redis-server`` binary (the package's own service is never used: we start our own)."""
    binary = _first_executable(REDIS_CANDIDATES) or shutil.which("redis-server")
    if binary is None:
        apt_install("redis-server")
        binary = _first_executable(REDIS_CANDIDATES) or shutil.which("redis-server")
    if binary is None:
        raise Unavailable("redis-server not found after install")
    return binary


def ensure_celery_provider() -> None:
    """The Celery provider comes with the project's ``test`` extra (pyproject.toml)."""
    try:
        importlib.import_module("airflow.providers.celery.executors.celery_executor")
        importlib.import_module("redis")
    except ImportError as exc:
        raise Unavailable(f"the Celery provider or the redis client is not installed ({exc}): "
                          "install the project with its test extra (make .venv/.installed)") from exc


def ensure_browser_tools() -> tuple[str, str]:
    """Debian's chromium and node + playwright-core (npm, private node_modules). No browser download."""
    chromium = _first_executable(CHROMIUM_CANDIDATES)
    if chromium is None:
        apt_install("chromium")
        chromium = _first_executable(CHROMIUM_CANDIDATES)
    if chromium is None:
        raise Unavailable("chromium not found after install")
    missing = [package for package, command in (("nodejs", "node"), ("npm", "npm")) if shutil.which(command) is None]
    if missing:
        apt_install(*missing)
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
