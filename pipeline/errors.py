"""The one exception type for user mistakes (bad arguments, config, inputs): the commands print its message, which
says what to change, without a traceback, and exit with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the arguments or the inputs; the message names the file or parameter and the fix.

    A parameter is named as the signature spells it, in backquotes (```batch_size` must be at least 1``): the
    message is written for a Python caller, and the command line shows each quoted name as its flag
    (``--batch-size``), so the API never speaks in flags and a person at the terminal reads the flag they typed. A
    fix that needs another command names that command's line (``dakd store S --verify``)."""


class UsageError(UserError):
    """A bad argument value (``weights="foo"``, ``seeds=0``): nothing was read or written."""


class InputError(UserError):
    """A file or store that cannot be used (missing or damaged weights, a checkpoint, a video list, a store that is
    not one); the message names it, why, and the fix. The API raises it in place of the lower layers' own types
    (``WeightsNotFound``, ``BadFile``, ``ValueError``), chained to them."""
