"""The shapes Y's data takes on its one-way trip, each defined once; every other module imports them.

read (reader: Spark aggregates a batch into COLLECTED rows: DELTA rows and quarantined rows)
  -> apply (live_state: folds DELTA rows in, returns the PAIR, MERCHANT and MEMBER rows it changed)
  -> commit (state: those rows into PostgreSQL, whose tables `sql/init_postgres_tables.sql` declares with the
     same columns and AMOUNT_SQL; detections with their ActionType from PATTERNS)
  -> files (output: rendered from the committed detections).
Plain pyarrow: the Spark schema of COLLECTED is derived in reader.py.
"""

from __future__ import annotations

import pyarrow as pa

# The three patterns of SPEC section 4: id -> ActionType.
PATTERNS = {"PatId1": "UPGRADE", "PatId2": "CHILD", "PatId3": "DEI-NEEDED"}

# Amounts: exact decimals, the same in Spark (DecimalType), Arrow and PostgreSQL (numeric).
AMOUNT_PRECISION, AMOUNT_SCALE = 38, 10
AMOUNT = pa.decimal128(AMOUNT_PRECISION, AMOUNT_SCALE)
AMOUNT_SQL = f"numeric({AMOUNT_PRECISION}, {AMOUNT_SCALE})"

# One batch's per-(chunk, customer, merchant) aggregates: n transactions, their amount sum s, the greatest
# name, whether any was by a woman / a man.
DELTA = pa.schema([
    ("chunk", pa.int32()), ("customer_id", pa.string()), ("merchant_id", pa.string()), ("n", pa.int64()),
    ("s", AMOUNT), ("name", pa.string()), ("has_f", pa.bool_()), ("has_m", pa.bool_()),
])
# What the reader's one Spark job returns: DELTA rows (kind "d") and rejected rows (kind "q": their line,
# reason and raw text) in one result.
COLLECTED = pa.schema([
    pa.field("kind", pa.string(), nullable=False), pa.field("chunk", pa.int32(), nullable=False),
    *[f for f in DELTA if f.name != "chunk"],
    ("line", pa.int64()), ("reason", pa.string()), ("raw", pa.string()),
])

# Y's running state, one row per (customer, merchant) pair and per merchant (customer_txn_stats and
# merchant_txn_count), and the distinct customers behind F(m) / M(m) (merchant_gender_customers).
PAIR = pa.schema([
    ("merchant_id", pa.string()), ("customer_id", pa.string()), ("txn_count", pa.int64()),
    ("amount_sum", AMOUNT), ("customer_name", pa.string()),
])
STORED_PAIR = pa.schema([*PAIR, ("has_f", pa.bool_()), ("has_m", pa.bool_())])  # a pair as loaded at start
MERCHANT = pa.schema([
    ("merchant_id", pa.string()), ("txn_count", pa.int64()), ("female_customers", pa.int64()),
    ("male_customers", pa.int64()),
])
MEMBER = pa.schema([("merchant_id", pa.string()), ("gender", pa.string()), ("customer_id", pa.string())])

_SQL_TYPES = {pa.string(): "text", pa.int64(): "bigint", AMOUNT: AMOUNT_SQL}


def temp_table_ddl(name: str, shape: pa.Schema) -> str:
    """`CREATE TEMP TABLE IF NOT EXISTS` for rows of `shape`, emptied at every commit (a batch's staging)."""
    columns = ", ".join(f"{f.name} {_SQL_TYPES[f.type]}" for f in shape)
    return f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS"
