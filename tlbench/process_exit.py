"""How a command ends: a normal exit up to CPython's native teardown, then `os._exit`.

Arrow's native thread pools can abort a process while the interpreter
finalizes (`terminate called without an active exception`, SIGABRT; see
apache/arrow#34314), after every result was written and the command had
decided its exit status: a `grid run` that succeeded exits 134. We saw it
once in 400 runs on a loaded machine, and once in CI. So the `python -m`
entry points end here: everything a normal exit does that a user can see
(non-daemon threads joined, atexit hooks such as Ray's shutdown run, stdout
and stderr flushed) and then `os._exit`, which skips only the teardown of
native modules and finalizers of objects still alive.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NoReturn


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's `main` and exit with its status the way `raise SystemExit(main())` would, without native teardown."""
    try:
        code = status_of(main())
    except SystemExit as exc:  # argparse's --help and usage errors, sys.exit inside the command
        code = status_of(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # what the interpreter would print for an uncaught exception, then its status
        traceback.print_exc()
        code = 1
    exit_process(code)


def status_of(code: object) -> int:
    """SystemExit's rules: None is 0, an int is itself, anything else is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_process(code: int) -> NoReturn:
    # First what interpreter shutdown does first: threading's own exit hooks (they wake idle thread-pool workers,
    # which would otherwise wait forever), then a join of every non-daemon thread. `threading._shutdown` is the very
    # function CPython calls there; the loop below is its fallback where a Python lacks it.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()  # Ray's shutdown, logging's flush, multiprocessing's cleanup
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that closed the pipe, or a stream already closed
            pass
    os._exit(code)
