"""`txnwatch generate`: a seeded, BankSim-shaped transactions file and its customer-importance file.

Full size matches the real BankSim set: ~594,643 rows, ~4,112 customers, 50 merchants, 180 steps,
two transport merchants carrying most rows. A smaller `rows` keeps the same shape with customers
scaled by rows / 594,643 (each customer keeps ~145 transactions), so rule thresholds that count
rows or customers scale the same way: see `scaled_thresholds`.

A bank's scale is many customers over a short time, not many rows per customer: `customers` sets the
customer count independently of `rows` (411,200 customers over 3 `steps` is ≈1M rows, ≈2.4 each), and
`steps` the number of steps the rows are spread over. Then the planted customers below keep an absolute
activity (about their BankSim row counts) instead of a share the crowd would dilute, and every planted
merchant gets enough women and men of its own to cross a female-customers bar scaled by customers.
Without `customers` the output is what it always was, byte for byte for a seed.

The three rules of SPEC section 4 must all fire, so their structure is planted rather than left
to chance:
- UPGRADE (PatId1): regular customers' weights grow with their activity, so the most frequent
  customers of a merchant are never its lowest-weight ones... except a planted set of very active,
  very loyal transport customers whose importance weight is tiny.
- CHILD (PatId2): regular customers' mean transport amount is >= 29 (so >= 80 transactions never
  average below 23 by chance); a planted set of very active customers pay ~14 per ride.
- DEI-NEEDED (PatId3): small merchants attract women about twice as often as men, except three
  planted merchants that take a large share of men's spending, each still with well over 100 women.
  With `customers`, each of them also gets 1.5× its scaled bar of women and as many men (one row each).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from txnwatch.core import defaults
from txnwatch.core.errors import TxnwatchError
from txnwatch.core.paths import local_dir

FULL_ROWS = defaults.FULL_ROWS
FULL_CUSTOMERS = 4_112
MIN_CUSTOMERS = 20
STEPS = 180
TRANSPORT = ("M1823072687", "M348934600")  # the real set's two transport merchants
# (merchant, category, relative popularity) of the other 48, after the real sample's first 10,000 rows.
OTHER_MERCHANTS = (
    ("M85975013", "food", 212), ("M855959430", "hyper", 206), ("M151143676", "barsandrestaurants", 204),
    ("M480139044", "health", 113), ("M209847108", "wellnessandbeauty", 107),
    ("M1535107174", "wellnessandbeauty", 86), ("M1053599405", "health", 69), ("M1600850729", "fashion", 54),
    ("M980657600", "sportsandtoys", 51), ("M547558035", "fashion", 43), ("M692898500", "health", 42),
    ("M1946091778", "wellnessandbeauty", 40), ("M1888755466", "otherservices", 40),
    ("M1198415165", "wellnessandbeauty", 37), ("M1649169323", "sportsandtoys", 29),
    ("M1741626453", "sportsandtoys", 27), ("M349281107", "fashion", 27), ("M1842530320", "tech", 26),
    ("M840466850", "tech", 22), ("M923029380", "home", 18), ("M2122776122", "home", 16),
    ("M857378720", "hotelservices", 13), ("M50039827", "health", 11), ("M732195782", "travel", 11),
    ("M1872033263", "home", 9), ("M348875670", "hotelservices", 8), ("M1352454843", "hotelservices", 7),
    ("M1313686961", "contents", 7), ("M1748431652", "wellnessandbeauty", 7), ("M3697346", "leisure", 6),
    ("M1294758098", "leisure", 6), ("M677738360", "contents", 6), ("M17379832", "sportsandtoys", 5),
    ("M2011752106", "hotelservices", 4), ("M495352832", "travel", 4), ("M1400236507", "home", 3),
    ("M45060432", "hotelservices", 3), ("M1913465890", "health", 2), ("M1873032707", "hotelservices", 2),
    ("M1353266412", "hotelservices", 1), ("M117188757", "home", 1), ("M78078399", "wellnessandbeauty", 1),
    ("M97925176", "wellnessandbeauty", 1), ("M1788569036", "hyper", 4), ("M1416436880", "food", 3),
    ("M1726401631", "tech", 2), ("M933210764", "travel", 1), ("M1600850730", "fashion", 2),
)
DEI_MERCHANTS = ("M980657600", "M1842530320", "M1649169323")  # planted male-skewed merchants
# Mean amount per category (INR), after the real sample.
CATEGORY_MEAN = {
    "food": 34.4, "hyper": 42.7, "barsandrestaurants": 43.6, "health": 165.0, "wellnessandbeauty": 72.5,
    "fashion": 63.7, "sportsandtoys": 195.7, "otherservices": 125.0, "tech": 135.1, "home": 182.9,
    "hotelservices": 142.3, "travel": 2629.6, "contents": 51.9, "leisure": 309.7,
}
GENDERS = ("F", "M", "E", "U")
GENDER_P = (0.5447, 0.4527, 0.0016, 0.0010)
AGES = ("0", "1", "2", "3", "4", "5", "6")
AGE_P = np.array((0.0039, 0.1012, 0.3190, 0.2430, 0.1781, 0.1094, 0.0438))
FIRST = ("Aarav", "Priya", "Rahul", "Ananya", "Vikram", "Meera", "Arjun", "Kavya", "Rohan", "Isha",
         "Sanjay", "Divya", "Karan", "Nisha", "Amit", "Pooja")
LAST = ("Sharma", "Iyer", "Patel", "Reddy", "Nair", "Gupta", "Singh", "Das", "Mehta", "Rao", "Khan",
        "Joshi")
BANKSIM_HEADER = ("step", "customer", "age", "gender", "zipcodeOri", "merchant", "zipMerchant",
                  "category", "amount", "fraud")
CANONICAL_HEADER = ("transactionId", "customerId", "customerName", "merchantId", "amount",
                    "transactionType", "gender", "timestamp")


@dataclass(frozen=True)
class GeneratedFiles:
    transactions: Path
    importance: Path


def scale(rows: int) -> float:
    return rows / FULL_ROWS


def scaled_thresholds(rows: int, customers: int | None = None) -> dict[str, int]:
    """Rule thresholds that count rows or customers, scaled to a data set of `rows` rows (and `customers`
    customers, when set apart from the rows as `generate(customers=...)` does).

    The merchant-volume bar (UPGRADE) counts rows, so it scales by rows; the female-customers bar (DEI-NEEDED)
    counts customers, so it scales by customers. Per-customer counts and amounts (the CHILD rule) do not scale.
    """
    by_customers = scale(rows) if customers is None else customers / FULL_CUSTOMERS
    return {"upgrade_min_merchant_txns": max(1, round(50_000 * scale(rows))),
            "dei_min_female_customers": _dei_bar(by_customers)}


def customer_count(rows: int, customers: int | None = None) -> int:
    """How many customers `generate` makes: `customers`, else BankSim's count scaled by rows."""
    return max(MIN_CUSTOMERS, round(FULL_CUSTOMERS * scale(rows))) if customers is None else customers


def _dei_bar(by_customers: float) -> int:
    return max(1, round(100 * by_customers))


def _planted(count_at_full: int, rows: int, minimum: int) -> int:
    return max(minimum, round(count_at_full * scale(rows)))


@dataclass
class _Customers:
    ids: np.ndarray
    names: np.ndarray
    gender: np.ndarray  # index into GENDERS
    age: np.ndarray
    activity: np.ndarray  # relative share of rows
    transport_share: np.ndarray
    pref_first: np.ndarray  # probability a transport ride goes to TRANSPORT[0]
    ride_mean: np.ndarray  # mean transport amount
    weight: np.ndarray  # importance weight (NaN: no importance rows)
    low_weight_at: np.ndarray  # index of the transport merchant where the weight is tiny, or -1
    planted: np.ndarray | None = None  # with `customers`: the CHILD and UPGRADE customers (absolute activity)


def _customers(rng: np.random.Generator, rows: int, customers: int | None = None) -> _Customers:
    n = customer_count(rows, customers)
    ids = np.unique(rng.integers(10_000_000, 2_200_000_000, size=n * 2))
    ids = rng.permutation(ids)[:n]
    # Exact proportions (then shuffled), so even a small data set has BankSim's gender mix.
    counts = [round(n * p) for p in GENDER_P[1:]]
    gender = rng.permutation(np.repeat(np.arange(len(GENDERS)), [n - sum(counts), *counts]))
    age = np.where(gender == 2, "U", np.asarray(AGES)[rng.choice(len(AGES), size=n, p=AGE_P / AGE_P.sum())])
    activity = rng.gamma(4.0, 0.25, size=n)
    transport_share = rng.beta(17, 3, size=n)
    loyal_first = rng.random(n) < 0.6
    pref_first = np.where(loyal_first, rng.beta(9, 1, size=n), rng.beta(1, 9, size=n))
    ride_mean = 29.0 + rng.exponential(4.0, size=n)

    # Importance grows with activity, so a merchant's most frequent customers are not its lowest-weight.
    rank = activity.argsort().argsort() / max(1, n - 1)
    weight = 1.0 + 9.0 * rank + rng.normal(0, 0.3, size=n)
    weight[rng.random(n) < 0.03] = np.nan  # some customers have no importance rows at all
    low_weight_at = np.full(n, -1)

    regular = np.flatnonzero((gender <= 1) & ~np.isnan(weight))
    n_child = _planted(36, rows, 2)
    n_upgrade = _planted(20, rows, 1)
    picked = rng.choice(regular, size=n_child + 2 * n_upgrade, replace=False)
    child, upgrade = picked[:n_child], picked[n_child:]
    # CHILD: very active, nearly all rides at one transport merchant, cheap rides.
    activity[child] = 1.6 + rng.random(n_child) * 0.3
    transport_share[child] = 0.97
    pref_first[child] = np.where(rng.random(n_child) < 0.5, 0.98, 0.02)
    ride_mean[child] = 13.0 + rng.random(n_child) * 3.0
    # UPGRADE: very active, loyal to one transport merchant, tiny weight there.
    activity[upgrade] = 2.0 + rng.random(2 * n_upgrade) * 0.4
    transport_share[upgrade] = 0.97
    at = np.repeat([0, 1], n_upgrade)
    pref_first[upgrade] = np.where(at == 0, 0.99, 0.01)
    low_weight_at[upgrade] = at

    first = np.asarray(FIRST)[rng.integers(0, len(FIRST), size=n)]
    last = np.asarray(LAST)[rng.integers(0, len(LAST), size=n)]
    names = np.char.add(np.char.add(first, " "), last)
    return _Customers(np.char.add("C", ids.astype(str)), names, gender, age, activity, transport_share,
                      pref_first, ride_mean, weight, low_weight_at, None if customers is None else picked)


def _row_customers(rng: np.random.Generator, rows: int, cust: _Customers) -> np.ndarray:
    """Each row's customer, drawn by activity. With `customers`, every customer has a row (so all N appear)
    and the other rows are drawn: the planted customers expect their BankSim row count (activity × rows per
    customer at full size; at most half of the rows together), the crowd shares the rest by activity."""
    if cust.planted is None:
        return rng.choice(len(cust.ids), size=rows, p=cust.activity / cust.activity.sum())
    n, extra = len(cust.ids), rows - len(cust.ids)
    planted = cust.activity[cust.planted] * (FULL_ROWS / FULL_CUSTOMERS) / max(1, extra)
    planted *= min(1.0, 0.5 / planted.sum())
    p = cust.activity.copy()
    p[cust.planted] = 0.0
    p *= (1.0 - planted.sum()) / p.sum()
    p[cust.planted] = planted
    return rng.permutation(np.concatenate([np.arange(n), rng.choice(n, size=extra, p=p)]))


def _rank_weights_by_rows(rng: np.random.Generator, c: np.ndarray, cust: _Customers) -> None:
    """With `customers`, a few rows each: the weights follow the rows a customer really has (not the activity
    they were drawn with), so a merchant's most frequent customers are still never its lowest-weight ones and
    UPGRADE fires for the planted customers, not for a crowd whose counts are mostly chance."""
    n = len(cust.ids)
    rank = np.bincount(c, minlength=n).argsort(kind="stable").argsort() / max(1, n - 1)
    known = ~np.isnan(cust.weight)
    cust.weight[known] = (1.0 + 9.0 * rank + rng.normal(0, 0.3, size=n))[known]


def _transactions(rng: np.random.Generator, rows: int, cust: _Customers, steps: int = STEPS) -> pd.DataFrame:
    n_merchants = len(TRANSPORT) + len(OTHER_MERCHANTS)
    merchant_ids = np.array(TRANSPORT + tuple(m for m, _, _ in OTHER_MERCHANTS))
    categories = np.array(("transportation",) * len(TRANSPORT) + tuple(c for _, c, _ in OTHER_MERCHANTS))
    cat_mean = np.array([27.0, 27.0] + [CATEGORY_MEAN[c] for _, c, _ in OTHER_MERCHANTS])

    c = _row_customers(rng, rows, cust)
    step = np.sort(rng.integers(0, steps, size=rows))
    transport = rng.random(rows) < cust.transport_share[c]
    merchant = np.where(rng.random(rows) < cust.pref_first[c], 0, 1)

    # Small merchants: the planted DEI merchants take half of men's non-transport spending and 2% of
    # women's, so they have far more male customers than female ones, while every ordinary merchant
    # draws women about twice as often as men. (A bias factor alone would be normalised away.)
    popularity = np.array([p for _, _, p in OTHER_MERCHANTS], dtype=float)
    popularity = popularity / popularity.sum() * 0.9 + 0.1 / len(popularity)  # every merchant is visited
    dei = np.isin(merchant_ids[2:], DEI_MERCHANTS)
    ordinary = np.where(dei, 0.0, popularity)
    ordinary /= ordinary.sum()
    planted = dei / dei.sum()
    dei_share = (0.02, 0.50, 0.10, 0.10)  # by gender F, M, E, U
    other = ~transport
    for g in range(len(GENDERS)):
        idx = np.flatnonzero(other & (cust.gender[c] == g))
        p = dei_share[g] * planted + (1 - dei_share[g]) * ordinary
        merchant[idx] = 2 + rng.choice(n_merchants - 2, size=len(idx), p=p)
    if cust.planted is not None:
        _rank_weights_by_rows(rng, c, cust)
        _plant_dei_customers(rng, c, cust, transport, merchant, np.flatnonzero(np.isin(merchant_ids, DEI_MERCHANTS)))

    amount = np.where(
        transport,
        cust.ride_mean[c] * rng.gamma(3.0, 1 / 3.0, size=rows),
        cat_mean[merchant] * rng.gamma(1.3, 1 / 1.3, size=rows),
    ).round(2)
    fraud = (rng.random(rows) < np.where(transport, 0.003, 0.06)).astype(np.int8)
    return pd.DataFrame({
        "step": step, "c": c, "merchant": merchant_ids[merchant], "category": "es_" + categories[merchant],
        "amount": amount, "fraud": fraud,
    })


def _plant_dei_customers(rng: np.random.Generator, c: np.ndarray, cust: _Customers, transport: np.ndarray,
                         merchant: np.ndarray, dei_at: np.ndarray) -> None:
    """Move one row of 1.5× the scaled bar of women, and of as many men, to each planted DEI merchant (in
    place; a non-transport row where the customer has one): F(m) crosses the bar two thirds into the stream
    however few rows each customer has, and the men's own share of those merchants keeps M(m) above F(m)."""
    target = int(np.ceil(1.5 * _dei_bar(len(cust.ids) / FULL_CUSTOMERS)))
    for g in (GENDERS.index("F"), GENDERS.index("M")):
        rows_of_g = np.flatnonzero(cust.gender[c] == g)
        order = rows_of_g[np.lexsort((rng.random(len(rows_of_g)), transport[rows_of_g], c[rows_of_g]))]
        first = order[np.r_[True, c[order][1:] != c[order][:-1]]] if len(order) else order  # a row per customer
        picked = rng.permutation(first)[:target * len(dei_at)]
        for at, part in zip(dei_at, np.array_split(picked, len(dei_at)), strict=True):
            merchant[part] = at
            transport[part] = False


def _importance(rng: np.random.Generator, tx: pd.DataFrame, cust: _Customers) -> pd.DataFrame:
    """One to three rows per (customer, merchant, type) seen, around the customer's weight there."""
    pairs = tx[["c", "merchant", "category"]].drop_duplicates().sort_values(["c", "merchant", "category"])
    pairs = pairs[~np.isnan(cust.weight[pairs["c"].to_numpy()])]
    c = pairs["c"].to_numpy()
    w = cust.weight[c].copy()
    low = cust.low_weight_at[c]
    tiny = (low >= 0) & (pairs["merchant"].to_numpy() == np.asarray(TRANSPORT)[np.maximum(low, 0)])
    w[tiny] = 0.05 + rng.random(int(tiny.sum())) * 0.25
    repeat = rng.integers(1, 4, size=len(pairs))
    out = pairs.loc[pairs.index.repeat(repeat)].reset_index(drop=True)
    out["weight"] = (np.repeat(w, repeat) * rng.normal(1.0, 0.03, size=len(out))).round(4)
    return out


def generate(rows: int, seed: int, layout: str, out_dir, customers: int | None = None,
             steps: int = STEPS) -> GeneratedFiles:
    """Write `<out_dir>/transactions.csv` and `<out_dir>/customer_importance.csv` (same seed, same bytes).

    customers: the customer count (default: scaled with rows, ~145 rows each); steps: how many steps the
    rows are spread over (default 180, BankSim's).
    """
    if layout not in ("banksim", "canonical"):
        raise TxnwatchError(f"unknown layout {layout!r}: use banksim or canonical")
    if rows <= 0 or steps <= 0:
        raise TxnwatchError("rows and steps must be positive")
    if customers is not None and not MIN_CUSTOMERS <= customers <= rows:
        raise TxnwatchError(f"customers must be at least {MIN_CUSTOMERS} (the planted ones need room) and at most "
                            "rows (each customer has a transaction)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cust = _customers(rng, rows, customers)
    tx = _transactions(rng, rows, cust, steps)
    imp = _importance(rng, tx, cust)
    files = GeneratedFiles(out / "transactions.csv", out / "customer_importance.csv")
    customer = cust.ids[tx["c"].to_numpy()]
    if layout == "banksim":
        frame = pd.DataFrame({
            "step": tx["step"], "customer": customer, "age": cust.age[tx["c"].to_numpy()],
            "gender": np.asarray(GENDERS)[cust.gender[tx["c"].to_numpy()]], "zipcodeOri": "28007",
            "merchant": tx["merchant"], "zipMerchant": "28007", "category": tx["category"],
            "amount": tx["amount"], "fraud": tx["fraud"],
        })
        _write_banksim(frame, files.transactions, BANKSIM_HEADER)
        net = pd.DataFrame({"Source": cust.ids[imp["c"].to_numpy()], "Target": imp["merchant"],
                            "Weight": imp["weight"], "typeTrans": imp["category"], "fraud": 0})
        _write_banksim(net, files.importance, tuple(net.columns))
    else:
        frame = pd.DataFrame({
            "transactionId": np.arange(rows), "customerId": customer,
            "customerName": cust.names[tx["c"].to_numpy()], "merchantId": tx["merchant"],
            "amount": tx["amount"], "transactionType": tx["category"],
            "gender": np.asarray(GENDERS)[cust.gender[tx["c"].to_numpy()]], "timestamp": tx["step"],
        })
        frame.to_csv(files.transactions, index=False, lineterminator="\n")
        canon = pd.DataFrame({"customerId": cust.ids[imp["c"].to_numpy()], "merchantId": imp["merchant"],
                              "transactionType": imp["category"], "weight": imp["weight"]})
        canon.to_csv(files.importance, index=False, lineterminator="\n")
    return files


def _write_banksim(frame: pd.DataFrame, path: Path, header: tuple[str, ...]) -> None:
    """BankSim's own quoting: text values in single quotes, numbers bare, header bare."""
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\n")
        frame.to_csv(f, index=False, header=False, quoting=csv.QUOTE_NONNUMERIC, quotechar="'",
                     lineterminator="\n")


def command(args) -> int:
    import logging
    import time

    t0 = time.monotonic()
    files = generate(args.rows, args.seed, args.layout, args.out_dir, args.customers, args.steps)
    logging.getLogger("txnwatch.generate").info(
        "wrote %s and %s (%d rows, %d customers, %d steps, %s layout, seed %d) in %.1fs", files.transactions,
        files.importance, args.rows, customer_count(args.rows, args.customers), args.steps, args.layout,
        args.seed, time.monotonic() - t0)
    return 0


# --- the demo data set: the same for `make demo` and the X DAG's default source (so triggering X with the
# form's defaults works on a fresh checkout), generated on demand under `.local/`.
DEMO_ROWS = FULL_ROWS
TRANSACTIONS = "transactions.csv"
IMPORTANCE = "customer_importance.csv"


def demo_data_dir(rows: int = FULL_ROWS) -> Path:
    return local_dir(create=False) / ("data" if rows == FULL_ROWS else f"data_{rows}")


def ensure_demo_data(out_dir: Path, rows: int = FULL_ROWS,
                     say: Callable[[str], None] | None = None) -> tuple[Path, Path, bool]:
    """(transactions, importance, generated now): the files in `out_dir`, generated if either is missing."""
    tx, imp = out_dir / TRANSACTIONS, out_dir / IMPORTANCE
    if tx.exists() and imp.exists():
        return tx, imp, False
    if say:
        say(f"generating a BankSim-shaped data set of {rows:,} rows (seed {defaults.SEED}) in {out_dir}")
    result = generate(rows=rows, seed=defaults.SEED, layout="banksim", out_dir=out_dir)
    return Path(result.transactions), Path(result.importance), True
