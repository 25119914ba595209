"""The one exception type for user mistakes (bad arguments, config, inputs): the commands print its message, which
says what to change, without a traceback, and exit with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the arguments or the inputs; the message names the file or parameter and the fix."""


class UsageError(UserError):
    """A bad argument value (``weights="foo"``, ``seeds=0``): nothing was read or written.

    ``parameters``: the API parameters the message names, spelled as in the signature (``batch_size``). The message
    is written for a Python caller; the command line replaces each of those names with its flag (``--batch-size``),
    so the API never speaks in flags and a person at the terminal reads the flag they typed."""

    def __init__(self, message: str, *, parameters: tuple[str, ...] = ()):
        super().__init__(message)
        self.parameters = tuple(parameters)


class InputError(UserError):
    """A file or store that cannot be used (missing or damaged weights, a checkpoint, a video list, a store that is
    not one); the message names it, why, and the fix. The API raises it in place of the lower layers' own types
    (``WeightsNotFound``, ``BadFile``, ``ValueError``), chained to them."""
