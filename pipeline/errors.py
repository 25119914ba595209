"""The one exception type for user mistakes (bad flags, config, inputs): the CLIs print its message, which says
what to change, without a traceback, and exit with code 2."""


class UserError(Exception):
    """A mistake in the command line or the inputs; the message names the file or flag and the fix."""
