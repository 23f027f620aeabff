"""The demo data set: BankSim-shaped, generated on demand under `.local/`, the same for `make demo` and
for the X DAG's default source (so triggering X with the form's defaults works on a fresh checkout)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from txnwatch.paths import local_dir

FULL_ROWS = 594_643  # the real BankSim file's size
DEMO_SEED = 7
TRANSACTIONS = "transactions.csv"
IMPORTANCE = "customer_importance.csv"


def demo_data_dir(rows: int = FULL_ROWS) -> Path:
    return local_dir(create=False) / ("data" if rows == FULL_ROWS else f"data_{rows}")


def ensure_demo_data(out_dir: Path, rows: int = FULL_ROWS,
                     say: Callable[[str], None] | None = None) -> tuple[Path, Path, bool]:
    """(transactions, importance, generated now): the files in `out_dir`, generated if either is missing."""
    from txnwatch.generate import generate

    tx, imp = out_dir / TRANSACTIONS, out_dir / IMPORTANCE
    if tx.exists() and imp.exists():
        return tx, imp, False
    if say:
        say(f"generating a BankSim-shaped data set of {rows:,} rows (seed {DEMO_SEED}) in {out_dir}")
    result = generate(rows=rows, seed=DEMO_SEED, layout="banksim", out_dir=out_dir)
    return Path(result.transactions), Path(result.importance), True
