"""Customer weights w(c, m) from the importance file (SPEC section 2), once per run.

w(c, m) is the mean, over the customer's transaction types, of the mean weight per type. Rows with a
merchantId count only for that merchant; rows with an empty merchantId count for every merchant (the
file may mix both: then w(c, m) uses c's rows for m together with c's merchant-less rows). A customer
with no applicable row has no weight. Rows whose weight is not a number are ignored.

The driver, which attaches w to the state rows it hands the rules, reads the file with Arrow
(reader.read_importance), reduces it to per (customer, merchant, type) sums and counts, combines those
into w(c, m) and, for merchant-less rows, w(c), with Arrow compute, and keeps them as sorted numpy arrays.
No Spark job: a once-per-run file of this size costs Arrow a fraction of a second on the driver, where a
Spark job would share the cores with the first chunks for seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from txnwatch.detect.key_index import Interner, combined, pair_keys, utf8_bytes


class Weights:
    """w(c, m): the specific weight, else the one from merchant-less rows, else none.

    Held as numpy arrays, not dicts: customer ids are interned (key_index.Interner), the specific weights
    sorted by (merchant, customer code), the merchant-less ones indexed by customer code. `at` serves one
    merchant at a time with one `searchsorted`."""

    def __init__(self, specific: pa.Table, generic: pa.Table) -> None:
        """specific: (customer_id, merchant_id, w); generic: (customer_id, w)."""
        self._ids = Interner()
        merchants = pc.dictionary_encode(combined(specific["merchant_id"]))
        self._merchant_of = {m: i for i, m in enumerate(merchants.dictionary.to_pylist())}
        customers = self._ids.codes(specific["customer_id"])
        keys = pair_keys(merchants.indices.to_numpy(zero_copy_only=False), customers)
        order = np.argsort(keys, kind="stable")
        self._keys, self._w = keys[order], _floats(specific["w"])[order]
        generic_codes = self._ids.codes(generic["customer_id"])
        self._generic = np.full(self._ids.size, np.nan)
        self._generic[generic_codes] = _floats(generic["w"])

    @classmethod
    def from_pairs(cls, specific: dict[tuple[str, str], float], generic: dict[str, float]) -> Weights:
        return cls(pa.table({"customer_id": pa.array([c for c, _ in specific], pa.string()),
                             "merchant_id": pa.array([m for _, m in specific], pa.string()),
                             "w": pa.array(list(specific.values()), pa.float64())}),
                   pa.table({"customer_id": pa.array(list(generic), pa.string()),
                             "w": pa.array(list(generic.values()), pa.float64())}))

    @property
    def specific(self) -> dict[tuple[str, str], float]:
        """Every specific weight keyed by (customer, merchant) (for inspection and tests)."""
        merchant = {i: m for m, i in self._merchant_of.items()}
        customers = self._ids.values(self._keys & 0xFFFFFFFF).tolist()
        return {(c.decode(), merchant[int(k >> 32)]): float(w)
                for c, k, w in zip(customers, self._keys.tolist(), self._w, strict=True)}

    @property
    def generic(self) -> dict[str, float]:
        """Every merchant-less weight keyed by customer (for inspection and tests)."""
        codes = np.flatnonzero(~np.isnan(self._generic))
        return {c.decode(): float(w) for c, w in zip(self._ids.values(codes).tolist(), self._generic[codes],
                                                     strict=True)}

    def __len__(self) -> int:
        return len(self._w)

    @property
    def generic_count(self) -> int:
        return int(np.count_nonzero(~np.isnan(self._generic)))

    def at(self, customers: np.ndarray | list[str], merchant: str) -> np.ndarray:
        """w(c, merchant) for each customer (ids as key_index.utf8_bytes, or a list), NaN where c has none.
        Called for the customers a merchant gains once it is past the volume bar (and for all of them when
        it gets there)."""
        if not isinstance(customers, np.ndarray):
            customers = utf8_bytes(pa.array(customers, pa.string()))
        codes = self._ids.find(customers)
        known = codes >= 0
        out = np.full(len(codes), np.nan)
        out[known] = self._generic[codes[known]]
        m = self._merchant_of.get(merchant)
        if m is not None and len(self._keys) and known.any():
            keys = pair_keys(np.full(int(known.sum()), m), codes[known])
            at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            hit = self._keys[at] == keys
            idx = np.flatnonzero(known)[hit]
            out[idx] = self._w[at[hit]]
        return out


def _floats(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return combined(pc.cast(col, pa.float64())).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


# A weight the reference (float()) would read: decimal or exponent notation, or inf, blanks around it.
_NUMBER = r"(?i)^\s*[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf|infinity)\s*$"


def weights_from_importance(importance: pa.Table) -> Weights:
    """w(c, m) from the importance file's rows (strings: customerId, merchantId, transactionType,
    weight): rows whose weight is not a number or whose customer is empty are ignored; one Arrow
    group-by to per (customer, merchant or "", type) sums and counts, then `weights_from_sums`."""
    usable = pc.and_(pc.match_substring_regex(importance["weight"], _NUMBER),
                     pc.not_equal(importance["customerId"], ""))
    rows = importance.filter(usable)
    weight = pc.cast(pc.utf8_trim_whitespace(rows["weight"]), pa.float64())
    sums = pa.table({"customer_id": rows["customerId"], "merchant_id": rows["merchantId"],
                     "t": rows["transactionType"], "weight": weight}) \
        .group_by(["customer_id", "merchant_id", "t"], use_threads=False) \
        .aggregate([("weight", "sum"), ("weight", "count")])
    return weights_from_sums(sums.rename_columns(["customer_id", "merchant_id", "t", "total", "rows"]))


def weights_from_sums(sums: pa.Table) -> Weights:
    """The mean over types of the mean per type, a type's rows being c's rows for m plus c's merchant-less
    rows. With Arrow joins and group-bys, not a Python loop per key: at 10× customers there are ≈700k keys,
    and a loop held the interpreter for seconds while the first chunks waited.

    Per (c, m) the types are c's merchant-less types (each contributes its mean g, or (s+g)/(ns+ng) when
    (c, m) has it too) plus the types only (c, m) has (s/ns): the customer's sum of g is computed once and
    each specific row adds its correction, so no (pair x merchant-less type) product is ever built."""
    sums = sums.select(["customer_id", "merchant_id", "t", "total", "rows"])
    total, rows = pc.cast(sums["total"], pa.float64()), pc.cast(sums["rows"], pa.float64())
    sums = pa.table({"customer_id": sums["customer_id"], "merchant_id": sums["merchant_id"], "t": sums["t"],
                     "total": total, "rows": rows})
    generic_rows = pc.equal(sums["merchant_id"], "")
    gen = sums.filter(generic_rows)
    gen = pa.table({"customer_id": gen["customer_id"], "t": gen["t"], "g_total": gen["total"],
                    "g_rows": gen["rows"], "g_mean": pc.divide(gen["total"], gen["rows"])})
    per_customer = gen.group_by("customer_id", use_threads=False).aggregate([("g_mean", "sum"), ("g_mean", "count")])
    generic = per_customer.select(["customer_id"]).append_column(
        "w", pc.divide(per_customer["g_mean_sum"], pc.cast(per_customer["g_mean_count"], pa.float64())))

    spec = sums.filter(pc.invert(generic_rows)).join(gen, keys=["customer_id", "t"], join_type="left outer",
                                                          use_threads=False)
    shared = pc.is_valid(spec["g_rows"])
    contrib = pc.if_else(shared, pc.subtract(pc.divide(pc.add(spec["total"], spec["g_total"]),
                                                       pc.add(spec["rows"], spec["g_rows"])), spec["g_mean"]),
                         pc.divide(spec["total"], spec["rows"]))
    per_pair = pa.table({"customer_id": spec["customer_id"], "merchant_id": spec["merchant_id"], "c": contrib,
                         "n": pc.cast(pc.invert(shared), pa.int64())}) \
        .group_by(["customer_id", "merchant_id"], use_threads=False).aggregate([("c", "sum"), ("n", "sum")]) \
        .join(per_customer, keys="customer_id", join_type="left outer", use_threads=False)
    w = pc.divide(pc.add(pc.coalesce(per_pair["g_mean_sum"], 0.0), per_pair["c_sum"]),
                  pc.cast(pc.add(pc.coalesce(per_pair["g_mean_count"], 0), per_pair["n_sum"]),
                          pa.float64()))
    return Weights(per_pair.select(["customer_id", "merchant_id"]).append_column("w", w), generic)
