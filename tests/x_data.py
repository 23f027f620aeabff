"""Small source files for ingest tests, written the way BankSim writes them."""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import zipfile
from pathlib import Path

import psycopg

BANKSIM_HEADER = "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud"
NETWORK_HEADER = "Source,Target,Weight,typeTrans,fraud"


def banksim_line(i: int, *, customer: str | None = None, merchant: str | None = None,
                 amount: str | None = None) -> str:
    customer = f"C{1000 + i % 37}" if customer is None else customer
    merchant = f"M{i % 5}" if merchant is None else merchant
    amount = f"{(i * 7) % 100 + 0.25:.2f}" if amount is None else amount
    gender = "FM"[i % 2]
    return f"{i // 10},'{customer}','3','{gender}','28007','{merchant}','28007','es_food',{amount},0"


def write_banksim(path: Path, rows: int, bad: dict[int, str] | None = None) -> Path:
    """`rows` data rows; `bad` replaces the line of some 0-based data rows with the given text."""
    bad = bad or {}
    lines = [BANKSIM_HEADER] + [bad.get(i, banksim_line(i)) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_importance(path: Path) -> Path:
    path.write_text(f"{NETWORK_HEADER}\n'C1000','M0',0.5,'es_food',0\n'C1001','M1',2.25,'es_food',0\n")
    return path


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def ledger(conn: psycopg.Connection, schema: str, landing: str) -> list[tuple[int, int, int]]:
    """(chunk, rows, rejected) of every x_chunks row of a landing zone, in chunk order."""
    return [tuple(r) for r in conn.execute(
        f"SELECT chunk, rows, rejected FROM {schema}.x_chunks WHERE landing = %s ORDER BY chunk",
        (landing,))]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every visible file of a local landing zone and its bytes (temp files start with a dot)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def write_gzip(path: Path, source: Path) -> Path:
    """`source` gzip-compressed into `path` (mtime 0: the same bytes every time)."""
    with open(source, "rb") as f, gzip.GzipFile(path, "wb", mtime=0) as out:
        shutil.copyfileobj(f, out)
    return path


def write_zip(path: Path, members: dict[str, Path]) -> Path:
    """A deflated zip archive holding each file under its member name."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, source in members.items():
            archive.write(source, name)
    return path
