"""The one exception type for mistakes a user can fix.

The CLI prints a ``UserError`` as a single line (what is wrong, where, what to do)
and exits with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, config or environment: the message alone must tell the user what to do."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
