"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""


class OnboardError(Exception):
    """An error whose message is meant for the user as-is (one line, says what to do)."""

    exit_code = 2
