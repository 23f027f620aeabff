"""Keys of the landing zone: the contract between Mechanism X, Mechanism Y and outside producers."""

from __future__ import annotations

CANONICAL_COLUMNS = (
    "transactionId",
    "customerId",
    "customerName",
    "merchantId",
    "amount",
    "transactionType",
    "gender",
    "timestamp",
)
IMPORTANCE_COLUMNS = ("customerId", "merchantId", "transactionType", "weight")

END_KEY = "_END.json"
REFERENCE_KEY = "_reference/customer_importance.csv"
REJECTED_PREFIX = "_rejected/"
CHUNK_FILE = "transactions.csv"


def chunk_dir(k: int) -> str:
    return f"chunk_{k:08d}"


def chunk_key(k: int) -> str:
    """`chunk_00000001/transactions.csv` for k = 1."""
    return f"{chunk_dir(k)}/{CHUNK_FILE}"


def rejected_key(k: int) -> str:
    return f"{REJECTED_PREFIX}chunk_{k:08d}.csv"

