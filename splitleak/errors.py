"""Errors a user can fix: the command line shows them as one line and exits with code 2."""


class InputError(ValueError):
    """Bad input: a file, option or setting splitleak cannot use (exit code 2, one line)."""
