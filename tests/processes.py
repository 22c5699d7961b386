"""Stopping the processes a test or a benchmark started."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable


def interrupt(processes: Iterable[subprocess.Popen], *, grace: float = 15) -> None:
    """Ctrl-C every process still running (a worker then commits and leaves its group), then
    give each `grace` seconds to finish before it is killed."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGINT)
    for process in running:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
