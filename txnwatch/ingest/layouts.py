"""Input layouts (SPEC section 2): detect them from the header, normalise rows to canonical columns.

Two transaction layouts (canonical and BankSim, whose text values are wrapped in single quotes) and
two importance layouts (canonical and the BankSim network file). Records are read by
`txnwatch.ingest.rows`, one at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from txnwatch.core.errors import TxnwatchError
from txnwatch.core.landing import CANONICAL_COLUMNS, IMPORTANCE_COLUMNS

BANKSIM_COLUMNS = ("step", "customer", "age", "gender", "zipcodeOri", "merchant", "zipMerchant",
                   "category", "amount", "fraud")
BANKSIM_NETWORK_COLUMNS = ("Source", "Target", "Weight", "typeTrans", "fraud")
REJECTED_COLUMNS = ("sourceLine", "reason", "raw")

# A plain decimal number. float() alone would also accept "nan", "inf" and "1_000", which no
# downstream reader treats as an amount.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def unquote(value: str) -> str:
    """BankSim's `'C123'` -> `C123`; anything else is only stripped of surrounding blanks."""
    value = value.strip()
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return value[1:-1]
    return value


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text))


def _header_names(fields: list[str]) -> list[str]:
    return [unquote(h) for h in fields]


def _describe_header(names: list[str]) -> str:
    text = ",".join(names)
    return text if len(text) <= 120 else text[:117] + "..."


# -- transactions -------------------------------------------------------------------------------


class TransactionLayout:
    """Turns source records into canonical rows, or a reason to reject them."""

    name: str
    quotechar: str  # how the data rows quote text values

    def __init__(self, header: list[str]) -> None:
        self.width = len(header)
        self.index = {h: i for i, h in enumerate(header)}

    def normalise(self, position: int, fields: list[str]) -> list[str] | str:
        """The canonical row of data row `position` (0-based), or the reason it is rejected."""
        if len(fields) != self.width:
            return f"wrong field count: {len(fields)}, expected {self.width}"
        row = self._row(position, fields)
        return _check(row)

    def _row(self, position: int, fields: list[str]) -> list[str]:
        raise NotImplementedError


def _check(row: list[str]) -> list[str] | str:
    amount = row[4]
    # Fast path for the common "123.45"; the regex settles everything else.
    if not (amount.isascii() and amount.replace(".", "", 1).isdigit()) and not _NUMBER.match(amount):
        return f"non-numeric amount: {amount!r}"
    if not row[1]:
        return "empty customer id"
    if not row[3]:
        return "empty merchant id"
    return row


class BankSimLayout(TransactionLayout):
    """BankSim wraps text in single quotes: rows are read with `'` as the quote character, so the
    csv module strips them (and a quoted comma stays inside its field)."""

    name = "banksim"
    quotechar = "'"

    def __init__(self, header: list[str]) -> None:
        super().__init__(header)
        # The hot path of a full replay: index lookups resolved once, not per row.
        self.cols = tuple(self.index[c] for c in ("customer", "merchant", "amount", "category", "gender",
                                                   "step"))

    def normalise(self, position: int, fields: list[str]) -> list[str] | str:
        if len(fields) != self.width:
            return f"wrong field count: {len(fields)}, expected {self.width}"
        c, m, a, t, g, s = self.cols
        customer = fields[c]
        # transactionId: BankSim has no id, the 0-based data-row number is stable across replays;
        # customerName: BankSim has no names.
        return _check([str(position), customer, customer, fields[m], fields[a], fields[t], fields[g],
                       fields[s]])


class CanonicalLayout(TransactionLayout):
    name = "canonical"
    quotechar = '"'

    def __init__(self, header: list[str]) -> None:
        super().__init__(header)
        self.order = [self.index[c] for c in CANONICAL_COLUMNS]

    def _row(self, position: int, fields: list[str]) -> list[str]:
        return [fields[j].strip() for j in self.order]


def transaction_layout(header: list[str], name: str) -> TransactionLayout:
    """The layout a header announces; extra columns are dropped, missing ones are an error."""
    names = _header_names(header)
    present = set(names)
    if len(present) == len(names):
        if set(BANKSIM_COLUMNS) <= present:
            return BankSimLayout(names)
        if set(CANONICAL_COLUMNS) <= present:
            return CanonicalLayout(names)
    raise TxnwatchError(
        f"{name}: unknown transactions header {_describe_header(names)!r}; expected the BankSim columns "
        f"({','.join(BANKSIM_COLUMNS)}) or the canonical ones ({','.join(CANONICAL_COLUMNS)})")


# -- customer importance ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportanceLayout:
    name: str
    customer: int
    merchant: int | None
    transaction_type: int
    weight: int
    width: int
    quotechar: str = '"'

    def normalise(self, fields: list[str]) -> list[str] | str:
        """The canonical importance row, or the reason it is rejected."""
        if len(fields) != self.width:
            return f"wrong field count: {len(fields)}, expected {self.width}"
        row = [
            unquote(fields[self.customer]),
            unquote(fields[self.merchant]) if self.merchant is not None else "",
            unquote(fields[self.transaction_type]),
            unquote(fields[self.weight]),
        ]
        if not row[0]:
            return "empty customer id"
        if not is_number(row[3]):
            return f"non-numeric weight: {row[3]!r}"
        return row


def importance_layout(header: list[str], name: str) -> ImportanceLayout:
    names = _header_names(header)
    idx = {h: i for i, h in enumerate(names)}
    if len(idx) == len(names):
        if set(BANKSIM_NETWORK_COLUMNS[:4]) <= idx.keys():
            return ImportanceLayout("banksim", idx["Source"], idx["Target"], idx["typeTrans"],
                                    idx["Weight"], len(names), quotechar="'")
        required = {"customerId", "transactionType", "weight"}
        if required <= idx.keys():
            return ImportanceLayout("canonical", idx["customerId"], idx.get("merchantId"),
                                    idx["transactionType"], idx["weight"], len(names))
    raise TxnwatchError(
        f"{name}: unknown importance header {_describe_header(names)!r}; expected the BankSim network "
        f"columns ({','.join(BANKSIM_NETWORK_COLUMNS)}) or {','.join(IMPORTANCE_COLUMNS)} "
        "(merchantId optional)")
