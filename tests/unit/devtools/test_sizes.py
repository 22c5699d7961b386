"""`make lint`'s size check: long modules and functions fail unless their docstring says why."""

from devtools.sizes import main, oversized


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def long_function(name: str, lines: int, reason: str = "") -> str:
    doc = f'    """{reason}"""\n' if reason else ""
    return f"def {name}():\n{doc}" + "    x = 1\n" * lines


def test_a_long_function_is_reported_and_a_short_one_is_not(tmp_path):
    path = write(tmp_path / "m.py", long_function("short", 10) + "\n\n" + long_function("long", 70))
    problems = oversized(path)
    assert len(problems) == 1 and "long is 71 lines" in problems[0]


def test_a_written_reason_lets_a_long_function_or_module_stand(tmp_path):
    body = long_function("long", 70, reason="Over 60 lines: one table, read top to bottom.")
    assert oversized(write(tmp_path / "f.py", body)) == []
    big = '"""A module.\n\nOver 400 lines: its tables stay together."""\n' + "x = 1\n" * 420
    assert oversized(write(tmp_path / "big.py", big)) == []
    assert "lines (limit 400" in oversized(write(tmp_path / "bare.py", "x = 1\n" * 420))[0]


def test_the_exit_status_fails_lint_only_when_something_is_oversized(tmp_path):
    write(tmp_path / "ok.py", long_function("fine", 5))
    assert main([str(tmp_path)]) == 0
    write(tmp_path / "bad.py", long_function("long", 61))
    assert main([str(tmp_path)]) == 1
