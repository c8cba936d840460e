"""One ending for every command line: a result, or one line that says what was wrong and what to do.

    sys.exit(cli.run(main))        # at the bottom of every `python -m lib.<command>`

`run` calls `main(argv)` and turns the project's own errors (`errors.ReproError`), bad values (`ValueError`),
refused writes, a full disk and other `OSError`s into `error: <one line>` on stderr and a non-zero exit:

- 2 for bad input (the project's errors, `ValueError`), as argparse does for bad arguments;
- 1 for the system refusing (`OSError`: permissions, a read-only file system, a full disk);
- 130 for Ctrl-C.

Set `REPRO_DEBUG=1` (or pass `--debug` to the command) to see the traceback instead.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from lib.core import paths
from lib.core.errors import ReproError

DEBUG_ENV = "REPRO_DEBUG"
BAD_INPUT, SYSTEM_REFUSED, INTERRUPTED = 2, 1, 130


def debugging(argv: list[str] | None = None) -> bool:
    """Whether tracebacks are wanted: `REPRO_DEBUG` set to anything but 0/empty, or `--debug` on the line."""
    argv = sys.argv[1:] if argv is None else argv
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv


def without_debug_flag(argv: list[str] | None = None) -> list[str]:
    """The arguments with `--debug` removed (so that a command's own parser need not know it)."""
    argv = sys.argv[1:] if argv is None else argv
    return [a for a in argv if a != "--debug"]


def one_line(err: BaseException) -> str:
    """The message for `err`, on one line: what was wrong and, where the library knows, what to do."""
    if isinstance(err, OSError) and not isinstance(err, ReproError):
        if paths.write_refused(err):
            return paths.not_writable(err)
        if err.errno == errno.ENOSPC:
            where = err.filename or paths.data_dir()
            return f"no space left on the device while writing {where}: free some space and run the command again"
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror or type(err).__name__}{where}"
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, ValueError | ReproError):
        return text
    return f"{type(err).__name__}: {text}"


def exit_code(err: BaseException) -> int:
    """2 for bad input, 1 for the system refusing, 130 for Ctrl-C."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(err, OSError) and not isinstance(err, ReproError):
        return SYSTEM_REFUSED
    return BAD_INPUT


def first_rank(environ: dict[str, str] | None = None) -> bool:
    """Whether this process is the one that speaks: alone, or rank 0 of the processes torchrun started (`$RANK`;
    a malformed value counts as rank 0, so that its error is seen)."""
    text = (os.environ if environ is None else environ).get("RANK", "").strip()
    return not (text.isascii() and text.isdigit()) or int(text) == 0


def run(main: Callable[[list[str]], int | None], argv: list[str] | None = None, speak: bool = True) -> int:
    """Run `main(argv)` (argv without `--debug`); its errors become one line on stderr and an exit code.

    A `SystemExit` (argparse's own one line for bad arguments, `--help`) passes through untouched; a bug that
    is none of the errors above keeps its traceback, since hiding it would hide what to report. `speak=False`
    (the torchrun ranks but the first, whose errors are rank 0's: `first_rank`) exits with the code in silence.
    """
    debug = debugging(argv)
    args = without_debug_flag(argv)
    try:
        code = main(args)
    except (ReproError, ValueError, OSError, KeyboardInterrupt) as err:
        if debug:
            raise
        if not speak:
            return exit_code(err)
        if isinstance(err, KeyboardInterrupt):
            print("\ninterrupted", file=sys.stderr)
        else:
            print(f"error: {one_line(err)}", file=sys.stderr)
        return exit_code(err)
    return 0 if code is None else int(code)
