"""Shared pieces of the benchmarks: environment report, statistics, tables, timing, one login.

Standard library plus deviceauth only at import time, so spawned worker processes stay cheap.
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # for tests/oidc_server.py

CLIENT_ID = "client-tools"
SCOPE = "openid"

_PACKAGES = (
    "deviceauth",
    "requests",
    "httpx",
    "httpx2",
    "urllib3",
    "authlib",
    "requests-oauth2client",
    "httpx-auth",
    "filelock",
)


def _git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}"


def print_environment(title: str, notes: list[str]) -> None:
    print(f"# {title}")
    print()
    print(f"python      {platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    print(f"platform    {platform.platform()}")
    print(f"cpus        os.cpu_count()={os.cpu_count()}  usable={len(os.sched_getaffinity(0))}")
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load avg    {load} (at start)")
    except OSError:
        pass
    print(f"deviceauth  git {_git_state()}")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    print(f"node        {node or 'missing'} (runs the oidc-provider test server)")
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    print("packages    " + "  ".join(versions))
    for note in notes:
        print(f"note        {note}")
    print()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(headers: list[str], rows: list[list[Any]], align_left: int = 1) -> None:
    """A Markdown table (pastes into notes as is); the first `align_left` columns are left-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        parts = [v.ljust(widths[i]) if i < align_left else v.rjust(widths[i]) for i, v in enumerate(values)]
        return "| " + " | ".join(parts) + " |"

    print(line(headers))
    print("|" + "|".join(("-" * (w + 1) + ("-" if i < align_left else ":")) for i, w in enumerate(widths)) + "|")
    for row in cells:
        print(line(row))


class Approver:
    """A prompt callback that approves the code at the test server, as a person in a browser would."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def __call__(self, code: Any) -> None:
        self.server.approve(code.user_code)


def make_auth(server: Any, cache: Path, **kwargs: Any) -> Any:
    from deviceauth import DeviceAuth

    options: dict[str, Any] = {
        "scope": SCOPE,
        "cache": cache,
        "prompt": Approver(server),
        "interactive": True,
        "open_browser": False,
    }
    options.update(kwargs)
    return DeviceAuth(server.issuer, CLIENT_ID, **options)


# -- timing one operation against its baseline ------------------------------------------------------

Loop = Callable[[int], None]  # runs the operation n times


def calls(fn: Callable[..., Any], *args: Any) -> Loop:
    """A loop that calls ``fn(*args)`` n times, with the call spelled out for 0-2 arguments (no ``*args`` cost)."""
    if not args:

        def loop0(n: int) -> None:
            for _ in range(n):
                fn()

        return loop0
    if len(args) == 1:
        (a,) = args

        def loop1(n: int) -> None:
            for _ in range(n):
                fn(a)

        return loop1
    if len(args) == 2:
        a, b = args

        def loop2(n: int) -> None:
            for _ in range(n):
                fn(a, b)

        return loop2

    def loop(n: int) -> None:
        for _ in range(n):
            fn(*args)

    return loop


@dataclass
class Timed:
    """Microseconds per call, one value per batch, for the measured side and its baseline."""

    ours: list[float]
    base: list[float]

    def cells(self) -> list[str]:
        """median, p95, baseline median, baseline p95, difference (µs) and ratio, formatted."""
        m, b = median(self.ours), median(self.base)
        return [
            f"{m:.2f}",
            f"{percentile(self.ours, 95):.2f}",
            f"{b:.2f}",
            f"{percentile(self.base, 95):.2f}",
            f"{m - b:+.2f}",
            f"{m / b:.2f}x",
        ]


def _batch(loop: Loop, n: int, use_gc: bool) -> float:
    gc.collect()
    if not use_gc:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        loop(n)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / n / 1000.0


def time_against(
    ours: Loop,
    baseline: Loop,
    *,
    calls_per_batch: int,
    batches: int = 30,
    warmup: int = 2,
    use_gc: bool = False,
    before_batch: Callable[[], None] | None = None,
) -> Timed:
    """Time ``ours`` and ``baseline`` in interleaved batches (A B, B A, ...) so drift hits both alike.

    ``warmup`` untimed batches of each come first. Each batch is ``calls_per_batch`` calls; its value
    is its wall time per call in µs, with the garbage collector off (``gc.collect()`` first) unless
    ``use_gc``. ``before_batch`` runs untimed before every batch of ``ours`` (to reset state it grows).
    """

    def run(loop: Loop, prepare: Callable[[], None] | None) -> float:
        if prepare is not None:
            prepare()
        return _batch(loop, calls_per_batch, use_gc)

    for _ in range(warmup):
        run(ours, before_batch)
        run(baseline, None)
    timed = Timed([], [])
    for i in range(batches):
        if i % 2 == 0:
            timed.ours.append(run(ours, before_batch))
            timed.base.append(run(baseline, None))
        else:
            timed.base.append(run(baseline, None))
            timed.ours.append(run(ours, before_batch))
    return timed
