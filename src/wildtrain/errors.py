"""The one exception type users see: a one-line message naming the file/key and what is expected."""


class WildtrainError(Exception):
    """A problem with the user's input or environment, reported as one clear line (no traceback)."""
