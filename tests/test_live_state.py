"""Y's state in memory across a restart (txnwatch/detect/live_state.py), without Spark or PostgreSQL."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from txnwatch.core.config import Thresholds
from txnwatch.detect.live_state import LiveState
from txnwatch.detect.shapes import DELTA, STORED_PAIR
from txnwatch.detect.weights import Weights

TH = Thresholds(upgrade_min_merchant_txns=5, dei_min_female_customers=1, child_min_txns=3)
WEIGHTS = Weights.from_pairs({(f"C{i}", "MBIG"): float(i) for i in range(8)}, {"C9": 0.5})


def _deltas(chunk: int, rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table({"chunk": [chunk] * len(rows), "customer_id": [c for c, _, _ in rows],
                     "merchant_id": [m for _, m, _ in rows], "n": [n for _, _, n in rows],
                     "s": pa.array([10 * n for _, _, n in rows], DELTA.field("s").type),
                     "name": [f"name of {c}" for c, _, _ in rows], "has_f": [True] * len(rows),
                     "has_m": [False] * len(rows)}, schema=DELTA)


def _stored(changes) -> pa.Table:
    pairs = changes.pairs
    return pairs.append_column("has_f", pa.array([True] * pairs.num_rows)) \
        .append_column("has_m", pa.array([False] * pairs.num_rows)).cast(STORED_PAIR)


def test_a_restart_builds_order_statistics_before_the_first_batch():
    before = LiveState(TH, lambda: WEIGHTS)
    changes = before.apply_batch(_deltas(1, [(f"C{i}", "MBIG", i + 1) for i in range(10)] + [("C1", "MSMALL", 1)]))
    calls = []
    after = LiveState(TH, lambda: calls.append("weights") or WEIGHTS)
    after.load(_stored(changes), changes.merchants, [])
    after.prepare()
    big = after.merchant_of["MBIG"]
    assert set(after.order_stats) == {big}  # MSMALL is under the volume bar
    assert calls and after.order_stats[big].customers == 10
    assert after.order_stats[big].weights.tolist() == sorted([0.5, *map(float, range(8))])  # C8 has none


def test_a_restarted_state_detects_what_an_uninterrupted_one_does():
    chunks = [_deltas(1, [(f"C{i}", "MBIG", 1) for i in range(10)]),
              _deltas(2, [("C0", "MBIG", 4), ("C5", "MBIG", 2), ("C9", "MSMALL", 3)]),
              _deltas(3, [("C0", "MBIG", 1), ("C1", "MBIG", 6)])]
    straight = LiveState(TH, lambda: WEIGHTS)
    expected = [m for d in chunks for m in straight.apply_batch(d).matches]

    first = LiveState(TH, lambda: WEIGHTS)
    changes = first.apply_batch(chunks[0])
    found = list(changes.matches)
    restarted = LiveState(TH, lambda: WEIGHTS)
    reported = [(m.pattern_id, m.customer_id, m.merchant_id) for m in found]
    restarted.load(_stored(changes), changes.merchants, reported)
    restarted.prepare()
    found += [m for d in chunks[1:] for m in restarted.apply_batch(d).matches]
    assert found == expected
    assert {m.pattern_id for m in expected} >= {"PatId1", "PatId2"}


def test_pairs_written_back_carry_the_ids_and_greatest_name():
    live = LiveState(TH, lambda: WEIGHTS)
    live.apply_batch(_deltas(1, [("Ünï", "M1", 1)]))
    changes = live.apply_batch(pa.concat_tables([
        _deltas(2, [("Ünï", "M1", 2)]).set_column(5, "name", pa.array(["zz"])),
        _deltas(3, [("Ünï", "M1", 1)]).set_column(5, "name", pa.array(["aa"]))]))
    row = changes.pairs.to_pylist()[0]
    assert (row["customer_id"], row["merchant_id"], row["txn_count"], row["customer_name"]) == ("Ünï", "M1", 4, "zz")
    assert pc.sum(changes.pairs["txn_count"]).as_py() == 4
