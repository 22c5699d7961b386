"""A command in a second shell finds the running `tongyuan up` through var_dir/stack.json, and
says in one line what is wrong when there is none."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.common.stack_state import NoBroker, StackState, remove_state, state_path, write_state

ROOT = Path(__file__).resolve().parents[3]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tongyuan(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}, "TONGYUAN_VAR_DIR": str(var_dir)}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_broker_of_the_running_stack_is_found_through_its_state_file(tmp_path):
    write_state(tmp_path, StackState(pid=os.getpid(), kafka_bootstrap="127.0.0.1:19092", portal="http://127.0.0.1:8000/"))
    assert Settings(var_dir=tmp_path).bootstrap == "127.0.0.1:19092"
    assert Settings(var_dir=tmp_path, kafka_bootstrap="broker:9092").bootstrap == "broker:9092"  # configured wins
    remove_state(tmp_path, pid=os.getpid())
    assert not state_path(tmp_path).exists()


def test_a_state_file_left_by_a_dead_up_is_ignored_and_said_so(tmp_path):
    write_state(tmp_path, StackState(pid=_dead_pid(), kafka_bootstrap="127.0.0.1:19092", portal=""))
    with pytest.raises(NoBroker, match="no longer running"):
        _ = Settings(var_dir=tmp_path).bootstrap


def test_another_ups_state_file_is_not_removed(tmp_path):
    write_state(tmp_path, StackState(pid=os.getpid(), kafka_bootstrap="127.0.0.1:19092", portal=""))
    remove_state(tmp_path, pid=os.getpid() + 1)
    assert state_path(tmp_path).exists()


@pytest.mark.parametrize("command", [["dlq", "list"], ["bridge", "poll", "--once"]])
def test_without_a_running_stack_a_command_says_so_in_one_line(tmp_path, command):
    result = _tongyuan(tmp_path, *command)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "no `tongyuan up` is running" in line and str(tmp_path.resolve()) in line


def test_a_stack_whose_broker_does_not_answer_is_one_line_too(tmp_path):
    port = _closed_port()
    write_state(tmp_path, StackState(pid=os.getpid(), kafka_bootstrap=f"127.0.0.1:{port}", portal=""))
    result = _tongyuan(tmp_path, "dlq", "list")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"no Kafka broker answers at 127.0.0.1:{port} (is the stack running? `tongyuan up` starts it)"]
