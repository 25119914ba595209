"""Errors about a user's input, carrying the file, the reason and the fix (shown without a traceback)."""

from __future__ import annotations


class VideoError(Exception):
    """A video (file or frame folder) that cannot be used; ``reason`` says why, ``fix`` what to do."""

    def __init__(self, path: str, reason: str, fix: str = ""):
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.path}: {reason}" + (f" ({fix})" if fix else ""))
