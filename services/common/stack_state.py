"""The running stack's state file: how a command in a second shell finds `tongyuan up`.

`tongyuan up` writes var_dir/stack.json (its pid and the embedded broker's address) once the
broker answers, and removes it when it stops cleanly. A file whose pid is no longer running
is what a killed `up` left behind: ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "stack.json"


class NoBroker(RuntimeError):
    """No broker is configured and no running `tongyuan up` was found: the message says which,
    in one line, for the person at the terminal."""


@dataclass(frozen=True)
class StackState:
    pid: int
    kafka_bootstrap: str
    portal: str


def state_path(var_dir: Path) -> Path:
    return Path(var_dir) / STATE_FILE


def write_state(var_dir: Path, state: StackState) -> Path:
    path = state_path(var_dir)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state)), encoding="utf-8")
    temporary.replace(path)
    return path


def remove_state(var_dir: Path, pid: int) -> None:
    """Remove the state file if it is this process's (another `up` may have replaced it)."""
    found = read_state(var_dir)
    if found is not None and found.pid == pid:
        state_path(var_dir).unlink(missing_ok=True)


def read_state(var_dir: Path) -> StackState | None:
    try:
        raw = json.loads(state_path(var_dir).read_text(encoding="utf-8"))
        return StackState(pid=int(raw["pid"]), kafka_bootstrap=str(raw["kafka_bootstrap"]), portal=str(raw.get("portal", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def running_stack(var_dir: Path) -> StackState:
    """The `tongyuan up` running on this var dir, or NoBroker saying why there is none."""
    where = Path(var_dir).resolve()
    state = read_state(var_dir)
    if state is None:
        raise NoBroker(
            f"no broker: TONGYUAN_KAFKA_BOOTSTRAP is not set and no `tongyuan up` is running on {where} "
            "(start one, run this where it runs or with its TONGYUAN_VAR_DIR, or point TONGYUAN_KAFKA_BOOTSTRAP at a broker)"
        )
    if not pid_alive(state.pid):
        raise NoBroker(
            f"no broker: the `tongyuan up` that wrote {state_path(where)} (pid {state.pid}) is no longer running; "
            "start it again, or point TONGYUAN_KAFKA_BOOTSTRAP at a broker"
        )
    return state
