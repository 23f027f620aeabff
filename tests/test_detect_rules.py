"""Hand-built edge cases of the rules with known answers, the weight definition, and the pieces of
the reader that do not need a whole stream."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from tests.reference_rules import detect_store, weights_from_csv
from tests.y_data import csv_bytes, read_output
from txnwatch.core.config import Thresholds
from txnwatch.core.landing import CANONICAL_COLUMNS, END_KEY, IMPORTANCE_COLUMNS, REFERENCE_KEY, chunk_key
from txnwatch.core.storage import S3Store, open_store
from txnwatch.detect.job import run_detect
from txnwatch.detect.reader import read_importance, s3a_path, spark_path
from txnwatch.detect.weights import weights_from_importance

EDGE = Thresholds(upgrade_min_merchant_txns=100)  # everything else at the SPEC's defaults


def _tx(rows: list, c: str, m: str, amount: str, gender: str, name: str | None = None) -> None:
    rows.append([str(len(rows)), c, name or f"Name {c}", m, amount, "es_food", gender, "0"])


def edge_world() -> tuple[list[list[list[str]]], list[list[str]]]:
    """Three chunks; the answer is worked out by hand in test_edge_cases."""
    c1: list = []
    c2: list = []
    c3: list = []
    # MUP crosses N > 100 inside chunk 2 (60 rows in chunk 1, 75 in chunk 2). Final counts:
    # U01..U10 = 20,20,20,15,10,10,10,5,5,20 -> P90 = 20 (a tie of four customers).
    counts = {"U01": 20, "U02": 20, "U03": 20, "U04": 15, "U05": 10, "U06": 10, "U07": 10, "U08": 5,
              "U09": 5, "U10": 20}
    seq = [c for c, n in counts.items() for _ in range(n)]
    random.Random(0).shuffle(seq)
    for i, c in enumerate(seq):
        _tx(c1 if i < 60 else c2, c, "MUP", "50.00", "E")
    # Weights at MUP: U01 = 1 (= P10, a tie with U04), U02 = 3, U03 = 2, U04 = 1, U05..U09 = 2,
    # U10 none (the top count, but no weight: never UPGRADE). P10 of [1,1,2,2,2,2,2,2,3] = 1.
    imp = [["U01", "MUP", "es_food", "0.5"], ["U01", "MUP", "es_food", "1.5"],  # mean per type = 1
           ["U02", "MUP", "es_food", "3"], ["U03", "MUP", "es_food", "2"], ["U04", "", "es_food", "1"]]
    imp += [[c, "MUP", t, "2"] for c in ("U05", "U06", "U07", "U08", "U09") for t in ("es_food", "es_bar")]
    # MCH: exactly 80 transactions averaging exactly 23 (not CHILD); 80 averaging just under 23
    # (CHILD, when the 80th arrives in chunk 2); 79 tiny ones (not CHILD).
    for i in range(80):
        _tx(c1 if i < 40 else c2, "K80", "MCH", "23.00", "U")
        _tx(c1 if i < 40 else c2, "K80B", "MCH", "22.99" if i == 79 else "23.00", "U",
            name="Kid B" if i % 2 else "Kid A")  # names vary: the greatest wins
        if i < 79:
            _tx(c1, "K79", "MCH", "1.00", "U")
    # Genders: MD1 has 101 F and 101 M customers plus E/U ones (which count as neither): not DEI.
    # MD2 has 101 F (each twice: distinct customers count) and 102 M: DEI in chunk 3.
    for i in range(101):
        _tx(c3, f"F{i:03d}", "MD1", "10.00", "F")
        _tx(c3, f"F{i:03d}", "MD2", "10.00", "F")
        _tx(c3, f"F{i:03d}", "MD2", "10.00", "F")
        _tx(c3, f"M{i:03d}", "MD1", "10.00", "M")
        _tx(c3, f"M{i:03d}", "MD2", "10.00", "M")
    _tx(c3, "M101", "MD2", "10.00", "M")
    for i in range(3):
        _tx(c3, f"E{i}", "MD1", "10.00", "E")
        _tx(c3, f"X{i}", "MD1", "10.00", "U")
    return [c1, c2, c3], imp


@pytest.mark.parametrize("batch", [1, 3])
def test_edge_cases(tmp_path, spark, pg_server_url, schema, batch):
    chunks, imp = edge_world()
    landing = open_store(str(tmp_path / "landing"))
    landing.put(REFERENCE_KEY, csv_bytes(IMPORTANCE_COLUMNS, imp))
    for k, rows in enumerate(chunks, start=1):
        landing.put(chunk_key(k), csv_bytes(CANONICAL_COLUMNS, rows))
    landing.put(END_KEY, b'{"chunks": 3, "rows": 0, "rejected": 0}')
    out = open_store(str(tmp_path / "out"))
    run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=batch,
               thresholds=EDGE, spark=spark)
    got = [(d["patternId"], d["ActionType"], d["customerName"], d["merchantId"]) for f in read_output(out)
           for d in f]
    assert got == [("PatId1", "UPGRADE", "Name U01", "MUP"),
                   ("PatId2", "CHILD", "Kid B", "MCH"),
                   ("PatId3", "DEI-NEEDED", "", "MD2")]
    ref = detect_store(landing, REFERENCE_KEY, EDGE)
    assert [(d.chunk, d.pattern_id) for d in ref] == [(2, "PatId1"), (2, "PatId2"), (3, "PatId3")]
    # Lowering the CHILD bar to 79 adds K79 (chunk 1); an average of exactly 23 still never counts.
    lower = dataclasses.replace(EDGE, child_min_txns=79)
    assert [(d.chunk, d.customer_id) for d in detect_store(landing, REFERENCE_KEY, lower)
            if d.pattern_id == "PatId2"] == [(1, "K79"), (2, "K80B")]


def _importance_store(tmp_path, data: bytes):
    store = open_store(str(tmp_path / "landing"))
    store.put(REFERENCE_KEY, data)
    return store


def test_weights_match_the_definition(tmp_path):
    rnd = random.Random(9)
    rows = []
    for c in (f"C{i}" for i in range(40)):
        for _ in range(rnd.randint(0, 6)):
            rows.append([c, rnd.choice(["", "M1", "M2", "M3"]), rnd.choice(["a", "b", "c"]),
                         str(rnd.choice([0.25, 1, 2.5, 4]))])
    rows.append(["C0", "M1", "a", "not-a-number"])  # ignored
    rows.append(["", "M1", "a", "3"])  # no customer: ignored
    rows.append(["C1", "M1", "a, quoted", " 2.5e0 "])  # a quoted comma; blanks around a number
    got = weights_from_importance(read_importance(_importance_store(tmp_path, csv_bytes(IMPORTANCE_COLUMNS, rows))))
    specific, generic = weights_from_csv(csv_bytes(IMPORTANCE_COLUMNS, rows))
    assert got.specific.keys() == specific.keys() and got.generic.keys() == generic.keys()
    for key, w in specific.items():
        assert got.specific[key] == pytest.approx(w, abs=1e-12)
    for key, w in generic.items():
        assert got.generic[key] == pytest.approx(w, abs=1e-12)
    # Per (customer, merchant): the specific weight if any, else the merchant-less one, else none.
    some = next(c for c in generic if not any(k[0] == c for k in specific))
    assert got.at([some], "M9")[0] == generic[some]
    assert np.isnan(got.at(["nobody"], "M1")[0])


def test_an_importance_row_with_missing_fields_is_skipped_and_counted(tmp_path, caplog):
    data = csv_bytes(IMPORTANCE_COLUMNS, [["C1", "M1", "a", "2"], ["C2", "M1", "a", "4"]]) + b"C3,M1,a\n"
    table = read_importance(_importance_store(tmp_path, data))
    assert table["customerId"].to_pylist() == ["C1", "C2"]
    assert "1 rows with the wrong number of fields ignored" in caplog.text


@pytest.mark.parametrize(("data", "why"), [
    (b"customerId,merchantId,weight\nC1,M1,2\n", "wrong header"),
    (b"customerId,merchantId,transactionType,weight\nC1,M\xff,a,2\n", "UTF8"),
])
def test_an_unusable_importance_file_means_no_weights_with_a_warning(tmp_path, caplog, data, why):
    assert read_importance(_importance_store(tmp_path, data)) is None
    assert "every customer is treated as having no weight" in caplog.text and why in caplog.text


def test_s3a_mapping(monkeypatch, tmp_path):
    assert s3a_path("bucket", "landing/chunk_00000001/transactions.csv") == \
        "s3a://bucket/landing/chunk_00000001/transactions.csv"
    store = S3Store("bkt", "/zone/a/", client=object())
    monkeypatch.delenv("TXNWATCH_SPARK_NATIVE_S3", raising=False)
    assert spark_path(store, chunk_key(3)) is None  # the driver fetches it (no hadoop-aws here)
    monkeypatch.setenv("TXNWATCH_SPARK_NATIVE_S3", "1")
    assert spark_path(store, chunk_key(3)) == "s3a://bkt/zone/a/chunk_00000003/transactions.csv"
    local = open_store(str(tmp_path))
    assert spark_path(local, chunk_key(1)) == str(tmp_path / "chunk_00000001" / "transactions.csv")
