"""Memory of an image download against the image's size: the hook's streaming vs buffering it whole.

For each image size, a fresh child process (so RSS is only the download's) downloads one image
from a loopback server in this process and writes it to a local file, while a thread samples its
RSS every 2 ms. Modes, interleaved per size:

* ``streamed``: ``MidjourneyHook.download_image`` (blocking), chunked, hashed on the way;
* ``streamed-async``: ``MidjourneyHook.adownload_image`` on an event loop;
* ``buffered`` (the baseline): ``requests.get(url).content`` then ``Path.write_bytes``, what the
  hook did before it streamed and what a hand-written task usually does.

The figure is RSS growth: the peak during the download minus the RSS just before it (after one
small warm-up download, so imports and sessions are not counted). Usage::

    .venv/bin/python benchmarks/download_memory.py           # 5, 10, 20, 40 and 80 MB (~1 min)
    .venv/bin/python benchmarks/download_memory.py --quick   # 5 and 20 MB (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, connection_env, machine  # noqa: E402

MB = 1024 * 1024
_BLOCK = b"\x89PNG\r\n\x1a\n" + os.urandom(64 * 1024 - 8)

CHILD = r"""
import asyncio, json, os, sys, threading, time
from pathlib import Path

from benchmarks._common import rss_bytes as rss  # the child runs in the repository's root

mode, url, warm, out = sys.argv[1:5]
import requests
from airflow_provider_mj.hooks import MidjourneyHook
hook = MidjourneyHook()

def streamed(u, p):
    hook.download_image(u, p)

def buffered(u, p):
    Path(p).write_bytes(requests.get(u, timeout=60).content)

loop = asyncio.new_event_loop()
def streamed_async(u, p):
    loop.run_until_complete(hook.adownload_image(u, p))

run = {"streamed": streamed, "buffered": buffered, "streamed-async": streamed_async}[mode]
run(warm, out + ".warm")
peak = base = rss()
done = False
def sample():
    global peak
    while not done:
        peak = max(peak, rss())
        time.sleep(0.002)
t = threading.Thread(target=sample, daemon=True)
t.start()
start = time.perf_counter()
run(url, out)
seconds = time.perf_counter() - start
done = True
t.join()
peak = max(peak, rss())
print("RESULT " + json.dumps({"growth": peak - base, "seconds": seconds, "size": os.path.getsize(out)}))
"""


def _server() -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's hook name
            size = int(self.path.strip("/").split(".")[0])
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            while sent < size:
                chunk = _BLOCK[: min(len(_BLOCK), size - sent)]
                self.wfile.write(chunk)
                sent += len(chunk)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def measure(mode: str, base_url: str, size: int, workdir: str) -> dict:
    env = connection_env(base_url)
    out = os.path.join(workdir, f"{mode}-{size}.png")
    done = subprocess.run([sys.executable, "-c", CHILD, mode, f"{base_url}/{size}.png",
                           f"{base_url}/{64 * 1024}.png", out], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"{mode} {size}: {done.stderr[-2000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    if result["size"] != size:
        raise SystemExit(f"{mode} {size}: wrote {result['size']} bytes")
    os.unlink(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 and 20 MB only")
    args = parser.parse_args()
    sizes = [5, 20] if args.quick else [5, 10, 20, 40, 80]
    httpd, base_url = _server()
    print(f"machine: {machine()}")
    print("RSS growth during one download to a local file (peak minus before), by image size\n")
    print("| image | buffered (baseline) | streamed | streamed-async | streamed / image | buffered / image |")
    print("|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    try:
        with tempfile.TemporaryDirectory(prefix="mj-bench-download-") as workdir:
            for mb in sizes:
                size = mb * MB
                got = {mode: measure(mode, base_url, size, workdir)
                       for mode in ("buffered", "streamed", "streamed-async")}
                growth = {mode: r["growth"] / MB for mode, r in got.items()}
                worst = max(worst, growth["streamed"], growth["streamed-async"])
                print(f"| {mb} MB | {growth['buffered']:.1f} MiB | {growth['streamed']:.1f} MiB | "
                      f"{growth['streamed-async']:.1f} MiB | {growth['streamed'] / mb:.2f} | "
                      f"{growth['buffered'] / mb:.2f} |")
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(f"\nlargest streamed growth: {worst:.1f} MiB over sizes up to {sizes[-1]} MB "
          "(flat: it does not follow the image size; the baseline does)")


if __name__ == "__main__":
    main()
