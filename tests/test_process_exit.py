"""Commands end without CPython's native teardown (where Arrow's threads can abort a run that succeeded), yet as a
normal exit would in everything a user sees: status, output, atexit hooks, threads' work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# An object alive at exit whose finalizer leaves a mark: it runs only if the interpreter tears down.
CANARY = textwrap.dedent(
    """
    import pathlib, sys
    class Canary:
        def __init__(self, path):
            self.path, self.open = path, open  # its own references: module globals may be gone by then
        def __del__(self):
            with self.open(self.path, "w") as mark:
                mark.write("torn down")
    canary = Canary(sys.argv[1])
    """
)


def test_a_command_keeps_its_status_output_hooks_and_threads_but_skips_teardown(tmp_path):
    script = CANARY + textwrap.dedent(
        """
        import atexit, threading, time
        from tlbench.process_exit import run_command
        atexit.register(lambda: pathlib.Path(sys.argv[2]).write_text("hook ran"))
        def late_writer():
            time.sleep(0.3)
            pathlib.Path(sys.argv[3]).write_text("thread finished")
        def main():
            threading.Thread(target=late_writer).start()
            sys.stdout.write("x" * 1_000_000)  # left in the buffer: the exit must flush it
            return 3
        run_command(main)
        """
    )
    marks = [tmp_path / name for name in ("teardown", "hook", "thread")]
    proc = subprocess.run([sys.executable, "-c", script, *map(str, marks)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert len(proc.stdout) == 1_000_000
    assert marks[1].read_text() == "hook ran" and marks[2].read_text() == "thread finished"
    assert not marks[0].exists(), "the interpreter tore down its objects: native teardown was not skipped"


def test_an_executor_left_open_does_not_hang_the_exit(tmp_path):
    """A thread pool nobody shut down: its idle workers wait on their queue until threading's exit hook wakes them.
    Joining them without that hook would hang every command that used one."""
    script = textwrap.dedent(
        """
        from concurrent.futures import ThreadPoolExecutor
        from tlbench.process_exit import run_command
        pool = ThreadPoolExecutor(2)
        def main():
            pool.submit(print, "done")
            return 0
        run_command(main)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr


@pytest.mark.parametrize(
    "code, status, stderr",
    [("return None", 0, ""), ("raise SystemExit('no grid')", 1, "no grid"), ("raise ValueError('boom')", 1, "ValueError: boom")],
)
def test_statuses_follow_system_exit_rules(code, status, stderr):
    script = f"from tlbench.process_exit import run_command\ndef main():\n    {code}\nrun_command(main)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == status
    assert stderr in proc.stderr


@pytest.mark.parametrize("module", ["tlbench.grid", "tlbench.report", "tlbench.bench"])
def test_each_entry_point_ends_through_it(module, tmp_path):
    """`--help` ends inside argparse (SystemExit 0): the status stays 0 and the canary's finalizer never runs."""
    mark = tmp_path / "teardown"
    script = CANARY + f"import runpy\nsys.argv = ['{module}', '--help']\nrunpy.run_module('{module}', run_name='__main__')\n"
    proc = subprocess.run([sys.executable, "-c", script, str(mark)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
    assert not mark.exists(), f"{module} ended through interpreter teardown"
