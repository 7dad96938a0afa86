"""What a user sees while a run goes: stage lines with times, a sign of life, library noise in a log."""

import io
import os
import subprocess
import sys
import time

import pytest

from edge_deploy.cli.progress import StageLines, format_seconds
from edge_deploy.status.events import StageEvent


def test_each_stage_gets_a_start_and_an_end_line_with_its_time():
    out = io.StringIO()
    lines = StageLines(out, heartbeat=60)
    lines.show(StageEvent("run-1", "stage-started", "convert"))
    lines.show(StageEvent("run-1", "stage-finished", "convert", seconds=83.4))
    lines.show(StageEvent("run-1", "stage-started", "validate"))
    lines.show(StageEvent("run-1", "stage-failed", "validate", seconds=2.0, error="parity: output dets 1e-1"))
    lines.close()
    assert out.getvalue().splitlines() == [
        "  - convert ...",
        "  ok     convert        1m23s",
        "  - validate ...",
        "  FAILED validate        2.0s: parity: output dets 1e-1",
    ]


def test_a_long_stage_says_it_is_alive_off_a_terminal():
    out = io.StringIO()
    lines = StageLines(out, heartbeat=0.3, tick=0.05)
    with lines.step("build"):
        time.sleep(0.8)
    lines.close()
    text = out.getvalue()
    assert text.count("... build still running") >= 2
    assert text.splitlines()[-1].startswith("  ok     build")


def test_a_failing_step_is_reported_and_raised():
    out = io.StringIO()
    lines = StageLines(out, heartbeat=60)
    with pytest.raises(RuntimeError), lines.step("base image"):
        raise RuntimeError("debootstrap failed (1)")
    lines.close()
    assert "FAILED base image" in out.getvalue() and "debootstrap failed (1)" in out.getvalue()


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0s"), (9.96, "10.0s"), (59.9, "59.9s"), (61, "1m01s")])
def test_seconds_read_as_a_person_would_write_them(seconds, text):
    assert format_seconds(seconds) == text


def test_output_to_log_catches_what_c_code_and_python_write_to_fds_1_and_2(tmp_path):
    # In a child: the capture rewires this process's file descriptors.
    program = f"""
import os, sys, warnings
from pathlib import Path
from edge_deploy.cli.progress import output_to_log
with output_to_log(Path({str(tmp_path / "run.log")!r})) as terminal:
    print("python stdout")
    warnings.warn("a library warning")
    os.write(1, b"c-level stdout\\n")
    os.write(2, b"c-level stderr\\n")
    terminal.write("stage line\\n")
print("after the block")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "stage line\nafter the block\n" and done.stderr == ""
    log = (tmp_path / "run.log").read_text()
    for text in ("python stdout", "a library warning", "c-level stdout", "c-level stderr"):
        assert text in log
    assert "stage line" not in log


def test_stage_lines_on_a_terminal_redraw_one_line_in_place():
    read_end, write_end = os.openpty()
    terminal = os.fdopen(write_end, "w")
    try:
        lines = StageLines(terminal, tick=0.05)
        with lines.step("convert"):
            time.sleep(0.3)
        lines.close()
        screen = os.read(read_end, 65536).decode()
    finally:
        terminal.close()
        os.close(read_end)
    assert "\r" in screen and "convert" in screen
    assert " - convert ..." not in screen  # the spinner line replaces the start line
    assert "ok     convert" in screen
