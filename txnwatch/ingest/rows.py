"""CSV records of an input file, streamed, with their source line and raw text; damage stays row-level.

The text stream is decoded with `errors="surrogateescape"`, so a byte that is not UTF-8 survives as a
lone surrogate instead of stopping the read. A record that holds such a byte, is longer than
MAX_RECORD_CHARS, or that the csv module cannot parse comes back with a `fault` (the reason it is
rejected) instead of stopping the stream; the caller quarantines it and reads on.

`escape_raw` turns a record's raw text into the form the `_rejected/` files hold: UTF-8 text in which
a backslash is written `\\\\` and each byte that is not UTF-8 `\\xNN`, so
`codecs.escape_decode(raw.encode())[0]` gives back the source bytes exactly.
"""

from __future__ import annotations

import csv
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import NamedTuple, TextIO

from txnwatch.core.errors import TxnwatchError, first_line

# csv's own default field limit: no real transaction row comes near it, so a longer record is damage
# (a missing newline, a binary blob), and refusing it keeps memory flat whatever the input holds.
MAX_RECORD_CHARS = 131_072
# How much of an over-long record the quarantine keeps: enough to find and recognise it.
RAW_KEEP_CHARS = 4096
_DRAIN_CHARS = 1 << 20
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_LINE_END = ("\n", "\r")
_READ_ERRORS = (EOFError, OSError, ValueError, zlib.error, zipfile.BadZipFile)


class Record(NamedTuple):
    line: int  # 1-based line of the source file the record starts on (the header is line 1)
    fields: list[str]
    raw: str  # the record's text without its line terminator (undecodable bytes as lone surrogates)
    fault: str | None = None  # why the record could not be read as a row; fields are empty then


def escape_raw(raw: str) -> str:
    """Backslashes doubled, undecodable bytes as `\\xNN`: valid UTF-8, and reversible."""
    text = raw.replace("\\", "\\\\")
    if _UNDECODABLE.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


class _TooLong(Exception):
    """A record over MAX_RECORD_CHARS: what is kept of it, its length, and the lines it took."""

    def __init__(self, head: str, chars: int, lines: int) -> None:
        super().__init__(chars)
        self.head, self.chars, self.lines = head, chars, lines


def _lines(f: TextIO, name: str, consumed: list[str]) -> Iterator[str]:
    """The physical lines the csv reader pulls; `consumed` collects the current record's lines.

    The caller empties `consumed` before each record. A record that grows past MAX_RECORD_CHARS ends
    this generator with _TooLong, after its last line has been read past in bounded pieces.
    """
    size = 0
    while True:
        if not consumed:
            size = 0
        budget = MAX_RECORD_CHARS - size
        try:
            text = f.readline(budget + 1)
        except _READ_ERRORS as e:
            raise _damaged(name, e) from None
        if not text:
            return
        if len(text) > budget:
            head = ("".join(consumed) + text[:RAW_KEEP_CHARS])[:RAW_KEEP_CHARS]
            raise _TooLong(head, size + _rest_of_line(f, name, text), len(consumed) + 1)
        consumed.append(text)
        size += len(text)
        yield text


def _rest_of_line(f: TextIO, name: str, head: str) -> int:
    """Read past the rest of an over-long line in bounded pieces; the line's full length."""
    total, piece = len(head), head
    while not piece.endswith(_LINE_END):
        try:
            piece = f.readline(_DRAIN_CHARS)
        except _READ_ERRORS as e:
            raise _damaged(name, e) from None
        if not piece:
            break
        total += len(piece)
    return total


def _damaged(name: str, e: BaseException) -> TxnwatchError:
    # Compressed input that ends early or is corrupt (gzip, deflate, zip CRC): the file is bad.
    return TxnwatchError(f"{name}: cannot read it to the end: {first_line(e, 200)}")


def read_records(f: TextIO, name: str, quotechar: str = '"', first_line: int = 1) -> Iterator[Record]:
    """Stream CSV records with their source line and raw text; blank lines hold no data and are skipped.

    A record may span lines (a quoted field with a newline), so the raw text is the lines the csv
    reader actually consumed for it. `first_line` is the line number of f's next line. `f` should be
    decoded with errors="surrogateescape" so that undecodable bytes become a record's fault.
    """
    consumed: list[str] = []
    reader = csv.reader(_lines(f, name, consumed), quotechar=quotechar)
    line = first_line
    while True:
        consumed.clear()
        fault = None
        try:
            fields = next(reader)
        except StopIteration:
            return
        except _TooLong as e:
            yield Record(line, [], e.head.rstrip("\r\n"),
                         f"record too long: {e.chars} characters, over the limit of {MAX_RECORD_CHARS} "
                         f"(raw keeps the first {RAW_KEEP_CHARS})")
            line += e.lines
            # That line source has ended; a new one goes on from the next line.
            reader = csv.reader(_lines(f, name, consumed), quotechar=quotechar)
            continue
        except csv.Error as e:
            fields, fault = [], f"unreadable CSV: {e}"  # the reader resets itself on its next call
        start = line
        line += len(consumed)
        if not fields and fault is None:
            continue
        raw = consumed[0] if len(consumed) == 1 else "".join(consumed)
        if fault is None and not raw.isascii() and _UNDECODABLE.search(raw):
            fields, fault = [], _undecodable_reason(raw)
        yield Record(start, fields, raw.rstrip("\r\n"), fault)


def _undecodable_reason(raw: str) -> str:
    byte = ord(_UNDECODABLE.search(raw).group()) - 0xDC00
    return f"not UTF-8 text (byte 0x{byte:02x})"
