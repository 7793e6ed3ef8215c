"""Load benchmark for ``anima serve`` on loopback: many clients verifying at once.

Why: a platform sizes its verify service by latency under load and by files per second, and must
trust that under load no request is lost, refused for good, or answered with another file's report.
This starts the real server (``anima serve`` in its own process, 127.0.0.1 only), sends
``--requests`` verify uploads from ``--clients`` concurrent clients (each clip a distinct stamp, so
a mixed-up answer shows), and prints:

* p50 / p95 / max latency and requests per second, with every answer checked (its verdict, its
  stamp id and its SHA-256 must be those of the clip sent; a 503 from the full queue is retried
  after its Retry-After and counted);
* the same clips through ``anima verify --json`` in a loop (a process per file, what a script
  without the server does) and ``Anima.verify`` in a loop in one process (the work itself);
* the server's memory (RSS) after warm-up and at its peak, and that no upload was left on disk.

It exits 1 if any answer was wrong, lost or mixed up, an upload was left behind, or the server's
memory grew by more than ``--max-growth-mb`` under load.

    python benchmarks/serve.py [--requests 200] [--clients 16] [--clips 8] [--workers 2] [--queue 8]

Loopback only; everything lives in a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
from scan import pan  # the same test footage as the scan benchmark (benchmarks/ is on the path)
from skimage import data

from anima import Anima
from anima.media import write_video

ANIMA = str(Path(sys.executable).parent / "anima")  # the command installed beside this Python
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "coins")


def uploads_left(folder: Path, grace_s: float = 60.0) -> list[Path]:
    """Upload files still on disk once the server has had ``grace_s`` to finish the requests whose
    answers are already out. Only the server's upload root counts: libraries leave their own files
    in the temp folder (a ``.ses`` file appeared there)."""
    deadline = time.monotonic() + grace_s
    while True:
        left = [p for p in folder.glob("anima-serve-*/**/*") if p.is_file()]  # the server's upload root
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def build(folder: Path, clips: int, size: int, frames: int) -> tuple[Path, list[tuple[Path, str, str]]]:
    """A home with a signing identity and ``clips`` stamped clips: (path, stamp id, sha256) each."""
    home = folder / "home"
    studio = Anima(home, actor="benchmark")
    studio.keys.init(org="Benchmark Studio")  # signing identity and watermark key
    stamped = []
    for index in range(clips):
        raw = folder / f"raw-{index}.mp4"
        photo = getattr(data, PHOTOS[index % len(PHOTOS)])()
        write_video(raw, np.stack(pan(photo, frames, size, seed=index)), fps=24, crf=18)
        result = studio.stamp(raw, folder / f"clip-{index}.mp4")
        stamped.append((result.output, result.stamp_id, result.output_sha256))
    return home, stamped


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, port: int, args: argparse.Namespace, tmp: Path) -> subprocess.Popen[bytes]:
    command = [
        ANIMA,
        "serve",
        "--home",
        str(home),
        "--port",
        str(port),
        "--rate-limit",
        "0",
        "--workers",
        str(args.workers),
        "--queue",
        str(args.queue),
    ]
    env = {**os.environ, "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/services/supportedAlgorithms").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
    raise SystemExit("the server did not start in 120 s")


class MemoryWatch(threading.Thread):
    """Samples a process's resident memory every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


def one_request(url: str, clip: tuple[Path, str, str], retries: list[int]) -> tuple[float, str | None]:
    """Upload one clip; the latency and what was wrong with the answer (None: right)."""
    path, stamp_id, sha256 = clip
    body = path.read_bytes()
    start = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        while True:
            response = client.post(url, files={"file": (path.name, body, "video/mp4")})
            if response.status_code != 503:
                break
            retries.append(1)
            time.sleep(float(response.headers.get("retry-after", "1")))
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        return elapsed, f"HTTP {response.status_code}: {response.text[:200]}"
    report = response.json()
    if report["stamp_id"] != stamp_id or report["sha256"] != sha256 or report["path"] != path.name:
        return (
            elapsed,
            f"mixed up: sent {path.name} ({stamp_id}), got {report['path']} ({report['stamp_id']})",
        )
    if report["verdict"] != "anima-generated":
        return elapsed, f"verdict {report['verdict']} for {path.name}"
    return elapsed, None


def cli_loop(home: Path, clips: list[tuple[Path, str, str]], count: int) -> float:
    """Files per second of ``anima verify --json`` run once per file."""
    start = time.perf_counter()
    for index in range(count):
        path = clips[index % len(clips)][0]
        subprocess.run(
            [ANIMA, "verify", str(path), "--json", "--home", str(home)], check=True, capture_output=True
        )
    return count / (time.perf_counter() - start)


def api_loop(home: Path, clips: list[tuple[Path, str, str]], count: int) -> float:
    """Files per second of ``Anima.verify`` in a loop in one process (detector loaded once)."""
    studio = Anima(home)
    studio.verify(clips[0][0])  # warm-up: the detector loads
    start = time.perf_counter()
    for index in range(count):
        studio.verify(clips[index % len(clips)][0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--clips", type=int, default=8, help="distinct stamped clips, sent in turn")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2, help="the server's verify workers")
    parser.add_argument("--queue", type=int, default=8, help="the server's queue beyond the workers")
    parser.add_argument("--baseline", type=int, default=8, help="files for each loop baseline")
    parser.add_argument(
        "--max-growth-mb", type=int, default=512, help="fail if the server's RSS grows more under load"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anima-bench-serve-") as scratch:
        folder = Path(scratch)
        tmp = folder / "server-tmp"
        tmp.mkdir()
        print(f"building {args.clips} stamped clips ({args.size} px, {args.frames} frames)...", flush=True)
        home, clips = build(folder, args.clips, args.size, args.frames)
        port = free_port()
        server = start_server(home, port, args, tmp)
        url = f"http://127.0.0.1:{port}/v1/verify"
        try:
            retries: list[int] = []
            one_request(url, clips[0], retries)  # warm-up: the detector loads in the server
            warm_rss = psutil.Process(server.pid).memory_info().rss
            watch = MemoryWatch(server.pid)
            watch.start()
            work = [clips[index % len(clips)] for index in range(args.requests)]
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda clip: one_request(url, clip, retries), work))
            wall = time.perf_counter() - start
            watch.done.set()
            watch.join()
            leftovers = uploads_left(tmp)
        finally:
            server.terminate()
            server.wait(30)
        latencies = sorted(elapsed for elapsed, _ in results)
        problems = [problem for _, problem in results if problem]
        quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        print(
            f"server: {args.requests} requests from {args.clients} clients "
            f"(workers {args.workers}, queue {args.queue}) in {wall:.1f} s: {args.requests / wall:.2f} req/s"
        )
        print(
            f"  latency p50 {quantiles[49]:.2f} s, p95 {quantiles[94]:.2f} s, max {latencies[-1]:.2f} s; "
            f"503 then retried: {len(retries)}"
        )
        print(
            f"  answers wrong, lost or mixed up: {len(problems)}"
            + (f" (first: {problems[0]})" if problems else "")
        )
        print(
            f"  server RSS after warm-up {warm_rss / 2**20:.0f} MiB, "
            f"peak under load {watch.peak / 2**20:.0f} MiB; uploads left on disk: {len(leftovers)}"
            + (f" ({', '.join(str(p.relative_to(tmp)) for p in leftovers[:3])})" if leftovers else "")
        )
        cli_rate = cli_loop(home, clips, args.baseline)
        api_rate = api_loop(home, clips, args.baseline)
        print(f"`anima verify --json` in a loop ({args.baseline} files): {cli_rate:.2f} files/s")
        print(f"Anima.verify in a loop, one process ({args.baseline} files): {api_rate:.2f} files/s")
        print(f"server throughput / CLI loop: {args.requests / wall / cli_rate:.1f}x")
        growth = (watch.peak - warm_rss) / 2**20
        if growth > args.max_growth_mb:
            print(f"memory grew by {growth:.0f} MiB under load (limit {args.max_growth_mb})")
        if problems or leftovers or growth > args.max_growth_mb:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
