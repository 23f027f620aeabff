"""The one exception type the CLI turns into a one-line error instead of a traceback."""


class TxnwatchError(Exception):
    """A problem the user can act on: bad input, unreachable service, wrong configuration."""
