"""Input files that may be compressed: plain text, gzip, or a zip archive, told apart by magic bytes.

Every source is first a local copy (`sources.fetch`: local, http, Google Drive, s3), so decompression
happens here, at read time, as a stream from that copy: memory stays flat and nothing is unpacked to
disk. A zip may hold several files (the public BankSim archive holds the transactions and the network
file): the member whose header the caller accepts is read. The compressed data is read through once
before the first row is used, so a truncated or corrupt archive is refused before anything lands.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.ingest.sources import LocalCopy

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with members; an empty one
_BLOCK = 1 << 18
_HEADER_CHARS = 65_536
# What a damaged archive raises while it is read: gzip (OSError, EOFError), deflate, zip CRC.
_DAMAGE = (OSError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class Wanted:
    """Which file the caller reads: a name for messages and a test of its header fields."""

    what: str  # e.g. "transactions file"
    accepts: Callable[[list[str]], bool]


def detect_format(path) -> str:
    """'gzip', 'zip' or 'plain', from the first bytes of the file (not from its name)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head in ZIP_MAGICS:
        return "zip"
    return "plain"


def text_stream(binary: BinaryIO) -> TextIO:
    """UTF-8 (a BOM is dropped); undecodable bytes stay as lone surrogates for the record reader to
    quarantine; newline="" as the csv module wants."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def open_input(copy: LocalCopy, role: str, wanted: Wanted) -> tuple[TextIO, str]:
    """A text stream of the input and the name to use for it in messages. One-line errors."""
    name = f"{role} {copy.location}"
    try:
        kind = detect_format(copy.path)
        if kind == "gzip":
            _read_through(lambda: gzip.open(copy.path, "rb"), f"{name} (gzip)")
            return text_stream(gzip.open(copy.path, "rb")), name
        if kind == "zip":
            return _open_member(copy, name, wanted)
        return text_stream(open(copy.path, "rb")), name
    except OSError as e:
        raise TxnwatchError(f"cannot read {name}: {e.strerror or e}") from None


def _read_through(opener: Callable[[], BinaryIO], name: str) -> None:
    """Decompress the whole stream once, discarding it, so damage shows before the first chunk lands."""
    try:
        with opener() as f:
            while f.read(_BLOCK):
                pass
    except _DAMAGE as e:
        raise TxnwatchError(f"{name} is damaged or truncated: {_reason(e)}") from None


def _reason(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "it ends before the end of its compressed data"
    return first_line(e, 200)


def _open_member(copy: LocalCopy, name: str, wanted: Wanted) -> tuple[TextIO, str]:
    try:
        archive = zipfile.ZipFile(copy.path)
    except (zipfile.BadZipFile, OSError) as e:
        raise TxnwatchError(f"{name} is not a readable zip archive (damaged or truncated): "
                            f"{first_line(e, 200)}") from None
    with archive:
        member = _pick_member(archive, name, wanted)
        member_name = f"{name} (zip member {member.filename})"
        _read_through(lambda: archive.open(member), member_name)
        # The member keeps the archive's file open after the ZipFile object is closed.
        return text_stream(archive.open(member)), member_name


def _pick_member(archive: zipfile.ZipFile, name: str, wanted: Wanted) -> zipfile.ZipInfo:
    files = [m for m in archive.infolist() if not m.is_dir() and m.file_size > 0]
    matching = [m for m in files if _header_accepted(archive, m, wanted)]
    if len(matching) == 1:
        return matching[0]
    listed = ", ".join(m.filename for m in (matching or files)[:6]) or "no files"
    if not matching:
        raise TxnwatchError(f"{name}: the zip holds no {wanted.what} (no member has its header; "
                            f"members: {listed})")
    raise TxnwatchError(f"{name}: the zip holds {len(matching)} {wanted.what}s ({listed}); "
                        "give an archive with one, or the file itself")


def _header_accepted(archive: zipfile.ZipFile, member: zipfile.ZipInfo, wanted: Wanted) -> bool:
    try:
        with archive.open(member) as raw:
            line = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="").readline(
                _HEADER_CHARS)
    except _DAMAGE:
        return False  # an unreadable member is not the one; if none is, the error says so
    fields = next(csv.reader([line]), [])
    return bool(fields) and wanted.accepts(fields)
