"""The one exception type the CLI turns into a one-line error instead of a traceback."""


class TxnwatchError(Exception):
    """A problem the user can act on: bad input, unreachable service, wrong configuration."""


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:limit] if limit else line
