"""The exceptions that mean "bad input", as opposed to a bug in splitleak.

Library code raises `InputError` (or a subclass: `DataError`, `CheckpointError`, `GateError`,
...) when what it was given cannot be used: an unknown name, a bad number, a malformed or unsafe
file, data that does not fit the model. The message is for the person who gave it, one line,
saying what is wrong. `NumericalError` is the same for numbers that blew up on the given input
(training diverged, an encoder or attack produced NaN). The command line turns both into exit
code 2 and `splitleak: error: ...`; any other exception is a bug: exit code 1 and a short
"internal error" line (the traceback with `-v`).

`OSError` (a missing file, no permission, a full disk, a read-only folder) is the environment's,
not a bug, and also exits 2; library code lets it through or re-raises it with the path.

Both derive from ValueError (and NumericalError from FloatingPointError), so existing
`except ValueError` / `pytest.raises(ValueError)` keep working. No imports: any module, torch-free
or not, can use it.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input (arguments, configs, files, data) that splitleak validated and refuses."""


class NumericalError(InputError, FloatingPointError):
    """Non-finite numbers produced from the given input: diverged training, NaN activations."""


__all__ = ["InputError", "NumericalError"]
