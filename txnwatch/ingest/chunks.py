"""Mechanism X's reading side: cut the source into chunks of R data-row positions, validate each row
(rejected rows keep their position and go to the chunk's `_rejected/` file), and normalise the importance
file. Everything here is in memory and deterministic: the same source and R give the same bytes.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from txnwatch.core import defaults
from txnwatch.core import landing as lz
from txnwatch.core.errors import TxnwatchError
from txnwatch.ingest.compressed import Wanted, open_input
from txnwatch.ingest.layouts import (
    REJECTED_COLUMNS,
    TransactionLayout,
    importance_layout,
    transaction_layout,
)
from txnwatch.ingest.rows import Record, escape_raw, read_records
from txnwatch.ingest.sources import LocalCopy

log = logging.getLogger("txnwatch.ingest")
# A chunk this small (a short last chunk, a tiny --rows-per-chunk) says too little about the file
# for a few bad rows in it to stop the stream.
REJECT_GUARD_MIN_ROWS = 20


@dataclass
class Chunk:
    k: int
    data: bytes
    rows: int
    rejected: bytes | None
    rejected_count: int


def _csv_bytes(header: tuple[str, ...], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _accepts(layout_of: Callable[[list[str], str], object]) -> Callable[[list[str]], bool]:
    """A header test from a layout detector: does it recognise these header fields?"""

    def accepts(fields: list[str]) -> bool:
        try:
            layout_of(fields, "")
        except TxnwatchError:
            return False
        return True
    return accepts


# What to read from a zip archive that holds several files (the BankSim archive holds both).
TRANSACTIONS = Wanted("transactions file", _accepts(transaction_layout))
IMPORTANCE = Wanted("importance file", _accepts(importance_layout))


def _read_header(f, name: str) -> Record:
    header = next(read_records(f, name), None)
    if header is None:
        raise TxnwatchError(f"{name} is empty")
    if header.fault:
        raise TxnwatchError(f"{name}: unreadable header: {header.fault}")
    return header


def _data_records(f, name: str, header: Record, quotechar: str) -> Iterator[Record]:
    """The records after the header, read with the layout's own quoting."""
    return read_records(f, name, quotechar, first_line=header.line + header.raw.count("\n") + 1)


def _rejected_row(record: Record, reason: str) -> list[str]:
    return [str(record.line), reason, escape_raw(record.raw)]


class ChunkReader:
    """Cuts the source into chunks of R data-row positions; rejected rows keep their position."""

    def __init__(self, copy: LocalCopy, rows_per_chunk: int,
                 max_reject_share: float = defaults.MAX_REJECT_SHARE) -> None:
        self.copy = copy
        self.rows_per_chunk = rows_per_chunk
        self.max_reject_share = max_reject_share
        self._file, self.name = open_input(copy, "source", TRANSACTIONS)
        try:
            header = _read_header(self._file, self.name)
            self.layout: TransactionLayout = transaction_layout(header.fields, self.name)
            self._records = _data_records(self._file, self.name, header, self.layout.quotechar)
            first_row = next(self._records, None)
            if first_row is None:
                raise TxnwatchError(f"{self.name} has a header but no data rows")
        except BaseException:
            self._file.close()
            raise
        self._position = 0
        self._rows = itertools.chain([first_row], self._records)

    def close(self) -> None:
        self._file.close()

    def skip(self, chunks: int) -> None:
        """Move past chunks already landed (resume): they are read, not rebuilt."""
        n = chunks * self.rows_per_chunk
        self._position += sum(1 for _ in itertools.islice(self._rows, n))

    def chunks(self, first: int) -> Iterator[Chunk]:
        k = first
        while True:
            rows: list[list[str]] = []
            rejected: list[list[str]] = []
            normalise, position = self.layout.normalise, self._position
            for record in itertools.islice(self._rows, self.rows_per_chunk):
                # A record the reader could not read as a row (not UTF-8, too long) carries its fault.
                out = record.fault or normalise(position, record.fields)
                position += 1
                if out.__class__ is str:
                    rejected.append(_rejected_row(record, out))
                else:
                    rows.append(out)
            self._position = position
            if not rows and not rejected:
                return
            self._guard(k, len(rows), rejected)
            yield Chunk(k, _csv_bytes(lz.CANONICAL_COLUMNS, rows), len(rows),
                        _csv_bytes(REJECTED_COLUMNS, rejected) if rejected else None, len(rejected))
            k += 1

    def _guard(self, k: int, landed: int, rejected: list[list[str]]) -> None:
        """Most of a chunk rejected means the wrong file, not a few damaged rows: stop before it lands."""
        total = landed + len(rejected)
        if total < REJECT_GUARD_MIN_ROWS or len(rejected) <= self.max_reject_share * total:
            return
        line, reason, _ = rejected[0]
        raise TxnwatchError(
            f"chunk {k}: {len(rejected)} of its {total} rows were rejected ({len(rejected) / total:.0%}, "
            f"over --max-reject-share {self.max_reject_share:g}); is {self.name} the right file? "
            f"First rejected: line {line}, {reason[:120]}. Nothing of chunk {k} was landed")


def normalise_importance(copy: LocalCopy) -> tuple[bytes, bytes | None, int, int]:
    """The canonical importance file, the rejected rows (or None), and the two row counts."""
    f, name = open_input(copy, "importance", IMPORTANCE)
    with f:
        header = _read_header(f, name)
        layout = importance_layout(header.fields, name)
        rows: list[list[str]] = []
        rejected: list[list[str]] = []
        for rec in _data_records(f, name, header, layout.quotechar):
            out = rec.fault or layout.normalise(rec.fields)
            if isinstance(out, str):
                rejected.append(_rejected_row(rec, out))
            else:
                rows.append(out)
    if not rows:
        raise TxnwatchError(f"{name} has no valid rows")
    return (_csv_bytes(lz.IMPORTANCE_COLUMNS, rows),
            _csv_bytes(REJECTED_COLUMNS, rejected) if rejected else None, len(rows), len(rejected))
