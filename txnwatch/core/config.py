"""Rule thresholds (SPEC section 4): configuration with the specified defaults."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from txnwatch.core.errors import TxnwatchError


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


# What each threshold means, for forms and help texts (SPEC section 4).
THRESHOLD_HELP = {
    "upgrade_min_merchant_txns": "PatId1 (UPGRADE): a merchant qualifies once its transactions N(m) exceed this.",
    "upgrade_count_percentile": "PatId1: the customer's transaction count n(c,m) must reach this percentile "
                                "of the merchant's customers (0.9 = P90).",
    "upgrade_weight_percentile": "PatId1: the customer's weight w(c,m) must be at most this percentile "
                                 "of the merchant's weighted customers (0.1 = P10).",
    "child_min_txns": "PatId2 (CHILD): at least this many transactions of the customer at the merchant.",
    "child_max_avg_amount": "PatId2: and their mean amount below this (INR).",
    "dei_min_female_customers": "PatId3 (DEI-NEEDED): the merchant's distinct female customers F(m) must "
                                "exceed this (and be fewer than its male ones).",
    "tolerance": "Absolute tolerance of the percentile and average comparisons (ties included).",
}


# The title each threshold's own field carries in the Y DAG's trigger form.
THRESHOLD_TITLES = {
    "upgrade_min_merchant_txns": "UPGRADE: merchant transactions above",
    "upgrade_count_percentile": "UPGRADE: count percentile",
    "upgrade_weight_percentile": "UPGRADE: weight percentile",
    "child_min_txns": "CHILD: transactions at least",
    "child_max_avg_amount": "CHILD: mean amount below (INR)",
    "dei_min_female_customers": "DEI-NEEDED: female customers above",
    "tolerance": "Comparison tolerance",
}


def threshold_field_schemas() -> dict[str, dict]:
    """Per threshold, the JSON schema of its own typed form field: type, default, bounds, title, meaning."""
    props = thresholds_json_schema()["properties"]
    return {name: {**props[name], "title": THRESHOLD_TITLES[name]} for name in props}


def thresholds_from_params(params: dict) -> dict:
    """The threshold overrides of a DAG run: its typed threshold fields, with its `thresholds` object (the
    conf scripts pass, `{"thresholds": {...}}`) over them; only the values that differ from the defaults."""
    defaults = asdict(Thresholds())
    merged = {name: params[name] for name in defaults if params.get(name) is not None}
    merged.update(params.get("thresholds") or {})
    return {name: value for name, value in merged.items() if value != defaults[name]}


def thresholds_json_schema() -> dict:
    """JSON schema of a thresholds override object: every name with its type, default and meaning;
    unknown names are refused (`additionalProperties: false`), so a typo fails where it is typed."""
    props: dict = {}
    for f in fields(Thresholds):
        kind = "integer" if f.type == "int" else "number"
        props[f.name] = {"type": kind, "default": f.default, "minimum": 0,
                         "description": f"{THRESHOLD_HELP[f.name]} Default {f.default}."}
        if f.name.endswith("_percentile"):
            props[f.name]["maximum"] = 1
    return {"type": "object", "properties": props, "additionalProperties": False}
