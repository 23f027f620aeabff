"""Rule thresholds (SPEC section 4): configuration with the specified defaults."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from txnwatch.errors import TxnwatchError


@dataclass(frozen=True)
class Thresholds:
    upgrade_min_merchant_txns: int = 50_000  # PatId1: N(m) must exceed this
    upgrade_count_percentile: float = 0.9  # PatId1: n(c,m) >= P90
    upgrade_weight_percentile: float = 0.1  # PatId1: w(c,m) <= P10
    child_min_txns: int = 80  # PatId2: n(c,m) >= this
    child_max_avg_amount: float = 23.0  # PatId2: mean amount below this
    dei_min_female_customers: int = 100  # PatId3: F(m) must exceed this
    tolerance: float = 1e-9

    @classmethod
    def from_overrides(cls, items: list[str] | None) -> Thresholds:
        """Thresholds from `name=value` strings (the CLI's repeatable --threshold)."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict = {}
        for item in items or []:
            name, sep, raw = item.partition("=")
            if not sep or name not in known:
                raise TxnwatchError(f"unknown threshold {item!r}; known: {', '.join(known)}")
            try:
                values[name] = int(raw) if known[name] == "int" else float(raw)
            except ValueError:
                raise TxnwatchError(f"threshold {name} needs a number, got {raw!r}") from None
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)
