"""The `splitleak` command's entry point ([project.scripts]): it imports the command line inside a
guard, so Ctrl-C while Python is still importing splitleak gives what an interrupt gives once the
command runs: one line `splitleak: interrupted` and exit code 130, not a traceback.

It imports only `sys`; `splitleak/__init__.py`, imported before it, imports nothing heavy.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130
INTERRUPTED = "splitleak: interrupted"


def main() -> int:
    """Run `splitleak.cli.main` on `sys.argv`; 130 and one line if interrupted while importing it."""
    try:
        from splitleak.cli import main as run
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    return run()


if __name__ == "__main__":
    sys.exit(main())
