"""The project's own errors: what the `reportguard` command turns into one line and an exit code.

Only these are caught by the CLI (src/reportguard/cli.py): a problem the person running a command
can act on, with a message that names the file, column or option and says why. Anything else is
a bug and shows its traceback.

- `InputError`: bad data or a refused input (a missing or unreadable file, a required column
  missing, an edited bundle, every row rejected); exit 1.
- `UsageError`: the command line itself is wrong (options that contradict each other, an output
  name the command cannot write); exit 2, as argparse's own usage errors.

Both are `ValueError`s too, so code written before these classes existed (`except ValueError`)
keeps working.

>>> from reportguard.core.errors import InputError, UsageError, exit_code
>>> exit_code(InputError("x.csv: no such file or directory")), exit_code(UsageError("--a and --b"))
(1, 2)
>>> exit_code(KeyError("a bug")) is None
True
"""
from __future__ import annotations

import re


class ReportguardError(Exception):
    """Base of the errors a person can act on; the message is one line."""
    exit_code = 1


class InputError(ReportguardError, ValueError):
    """Bad data or a refused input; the message names the file (and line and column if known)."""
    exit_code = 1


class UsageError(ReportguardError, ValueError):
    """The command line is wrong: options that cannot go together, a value the command cannot use."""
    exit_code = 2


def exit_code(exc: BaseException) -> int | None:
    """The exit code for one of the project's errors; None for anything else (a bug: show its traceback)."""
    if isinstance(exc, ReportguardError):
        return int(getattr(exc, "exit_code", 1))
    return None


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a message never spans lines in the CLI's output)."""
    return re.sub(r"\s*\n\s*", " ", str(exc)).strip() or type(exc).__name__
