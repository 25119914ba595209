"""The one exception type for user mistakes (bad flags, config, inputs): the CLIs print its message, which says
what to change, without a traceback, and exit with code 2."""


class UserError(Exception):
    """A mistake in the command line or the inputs; the message names the file or flag and the fix."""


class UsageError(UserError):
    """A bad flag or argument value (``--weights foo``, ``--seeds 0``): nothing was read or written."""


class InputError(UserError):
    """A file or store that cannot be used (missing or damaged weights, a checkpoint, a video list, a store that is
    not one); the message names it, why, and the fix. The API raises it in place of the lower layers' own types
    (``WeightsNotFound``, ``BadFile``, ``ValueError``), chained to them."""
