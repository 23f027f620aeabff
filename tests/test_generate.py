"""`txnwatch generate`: seeded BankSim-shaped data in both layouts, on which all three rules fire, also with
many customers and few rows each (`customers`, `steps`)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pandas as pd
import pytest

from tests.reference_rules import detect
from tests.x_rules import detections, load_transactions
from txnwatch.core.config import Thresholds
from txnwatch.core.landing import CANONICAL_COLUMNS
from txnwatch.generate import DEI_MERCHANTS, FULL_CUSTOMERS, FULL_ROWS, TRANSPORT, generate, scaled_thresholds
from txnwatch.ingest.job import run_ingest

ROWS = 60_000
# A bank's shape in small: 20,000 customers (≈5× BankSim's) with 2.5 rows each over 3 steps (the 100× set of
# `make bench` has 411,200 customers, 983,000 rows).
MANY_CUSTOMERS, MANY_ROWS, MANY_STEPS = 20_000, 50_000, 3


@pytest.fixture(scope="module")
def banksim(tmp_path_factory):
    return generate(ROWS, 7, "banksim", tmp_path_factory.mktemp("banksim"))


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    return generate(ROWS, 7, "canonical", tmp_path_factory.mktemp("canonical"))


@pytest.fixture(scope="module")
def frame(banksim) -> pd.DataFrame:
    return pd.read_csv(banksim.transactions, quotechar="'", dtype={"customer": str, "age": str})


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate(5_000, 3, "banksim", tmp_path / "a")
    b = generate(5_000, 3, "banksim", tmp_path / "b")
    c = generate(5_000, 4, "banksim", tmp_path / "c")
    assert a.transactions.read_bytes() == b.transactions.read_bytes()
    assert a.importance.read_bytes() == b.importance.read_bytes()
    assert a.transactions.read_bytes() != c.transactions.read_bytes()


@pytest.mark.parametrize(("layout", "sha256"), [
    ("banksim", "d2fe8f6305f225fe059edf55ef09c65a9f8087e913e9e24e9b25be8980cb3500"),
    ("canonical", "44b3efea32d6d6747c880cd6036b0da505e45ede628162f1049d67233d0564f7"),
])
def test_default_output_is_unchanged_byte_for_byte(tmp_path, layout, sha256):
    """Pinned from the generator before `customers` and `steps` existed (numpy and pandas as constraints.txt
    locks them): without them a seed still writes the very same files."""
    files = generate(5_000, 3, layout, tmp_path)
    assert hashlib.sha256(files.transactions.read_bytes() + files.importance.read_bytes()).hexdigest() == sha256
    again = generate(5_000, 3, layout, tmp_path / "again", customers=None, steps=180)
    assert again.transactions.read_bytes() == files.transactions.read_bytes()


def test_banksim_layout_quotes_text_values_like_the_real_file(banksim, sample_csv):
    lines = banksim.transactions.read_text().splitlines()
    assert lines[0] == sample_csv.open().readline().strip()
    step, customer, age, gender, zipcode, merchant, zipm, category, amount, fraud = lines[1].split(",")
    assert customer.startswith("'C") and merchant.startswith("'M") and category.startswith("'es_")
    assert step.isdigit() and fraud in ("0", "1") and float(amount) >= 0
    assert banksim.importance.read_text().splitlines()[0] == "Source,Target,Weight,typeTrans,fraud"


def test_rows_are_in_step_order_over_180_steps(frame):
    assert len(frame) == ROWS
    assert frame["step"].is_monotonic_increasing
    assert (frame["step"].min(), frame["step"].max()) == (0, 179)


def test_shape_scales_with_rows(frame):
    assert frame["customer"].nunique() == pytest.approx(FULL_CUSTOMERS * ROWS / FULL_ROWS, rel=0.02)
    assert frame["merchant"].nunique() == 50
    genders = frame.drop_duplicates("customer")["gender"].value_counts(normalize=True)
    assert genders["F"] == pytest.approx(0.545, abs=0.005) and genders["M"] == pytest.approx(0.453, abs=0.005)
    assert set(genders.index) <= {"F", "M", "E", "U"}


def test_two_transport_merchants_carry_most_rows(frame):
    top = frame["merchant"].value_counts()
    assert set(top.index[:2]) == set(TRANSPORT)
    assert top.iloc[:2].sum() > 0.8 * len(frame)
    assert (frame.loc[frame["merchant"].isin(TRANSPORT), "category"] == "es_transportation").all()


def test_canonical_layout_holds_the_same_transactions(banksim, canonical):
    a = load_transactions(banksim.transactions)
    b = load_transactions(canonical.transactions)
    pd.testing.assert_frame_equal(a, b)
    header = canonical.transactions.open().readline().strip().split(",")
    assert header == list(CANONICAL_COLUMNS)
    assert canonical.importance.open().readline().strip() == "customerId,merchantId,transactionType,weight"


def test_all_three_rules_fire_with_thresholds_scaled_to_the_size(banksim):
    found = detections(banksim.transactions, banksim.importance, 10_000, **scaled_thresholds(ROWS))
    # Full size plants ~40 UPGRADE, ~36 CHILD and 3 DEI-NEEDED; a tenth of the rows keeps a tenth of
    # the planted customers and all three planted merchants.
    assert 3 <= len(found["PatId1"]) <= 10
    assert 3 <= len(found["PatId2"]) <= 10
    assert {m for m, _ in found["PatId3"]} == set(DEI_MERCHANTS)


def test_generated_files_ingest_without_rejections(banksim, canonical, tmp_path, pg_server_url, schema, db,
                                                   monkeypatch):
    monkeypatch.setenv("TXNWATCH_LOCAL_DIR", str(tmp_path / "local"))
    for files in (banksim, canonical):
        land = tmp_path / files.transactions.parent.name
        s = run_ingest(str(files.transactions), str(files.importance), str(land), pg_server_url, schema,
                       rows_per_chunk=30_000, interval=0)
        assert (s.chunks_landed, s.rows, s.rejected) == (2, ROWS, 0)


def test_cli_writes_both_files(tmp_path):
    args = ["--rows", "2000", "--seed", "1", "--layout", "canonical", "--out-dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "txnwatch", "generate", *args], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "transactions.csv").read_text().splitlines()) == 2001
    assert (tmp_path / "customer_importance.csv").stat().st_size > 0


def test_cli_takes_customers_and_steps(tmp_path):
    args = ["--rows", "3000", "--customers", "1000", "--steps", "3", "--layout", "canonical", "--out-dir",
            str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "txnwatch", "generate", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "1000 customers, 3 steps" in proc.stderr
    tx = pd.read_csv(tmp_path / "transactions.csv")
    assert (len(tx), tx["customerId"].nunique(), tx["timestamp"].nunique()) == (3000, 1000, 3)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    return generate(MANY_ROWS, 7, "canonical", tmp_path_factory.mktemp("many"), customers=MANY_CUSTOMERS,
                    steps=MANY_STEPS)


def test_customers_count_is_honoured_whatever_the_rows(many):
    tx = pd.read_csv(many.transactions, dtype={"customerId": str})
    assert len(tx) == MANY_ROWS
    assert tx["customerId"].nunique() == MANY_CUSTOMERS  # each customer has a transaction
    imp = pd.read_csv(many.importance, dtype={"customerId": str})
    assert set(imp["customerId"]) <= set(tx["customerId"])


def test_steps_spread_the_rows_over_that_many_steps(many, tmp_path):
    tx = pd.read_csv(many.transactions)
    assert tx["timestamp"].is_monotonic_increasing
    assert sorted(tx["timestamp"].unique()) == list(range(MANY_STEPS))
    files = generate(2_000, 1, "banksim", tmp_path, steps=7)
    steps = pd.read_csv(files.transactions, quotechar="'")["step"]
    assert sorted(steps.unique()) == list(range(7))


def test_customers_out_of_range_are_refused(tmp_path):
    from txnwatch.core.errors import TxnwatchError

    for customers in (19, 2_001):
        with pytest.raises(TxnwatchError, match="customers must be"):
            generate(2_000, 1, "banksim", tmp_path, customers=customers)


def _chunks(path, rows_per_chunk: int) -> list[bytes]:
    header, *lines = path.read_bytes().splitlines(keepends=True)
    return [header + b"".join(lines[i:i + rows_per_chunk]) for i in range(0, len(lines), rows_per_chunk)]


def test_reference_finds_each_pattern_among_many_customers_with_scaled_thresholds(many):
    """The planted customers keep their BankSim row counts among a crowd of 2.5-row customers, the planted
    merchants their women and men: all three patterns fire at the thresholds scaled by rows (merchant volume)
    and by customers (female customers), and UPGRADE fires for the planted customers, not for the crowd."""
    th = Thresholds(**scaled_thresholds(MANY_ROWS, MANY_CUSTOMERS))
    assert th.dei_min_female_customers == round(100 * MANY_CUSTOMERS / FULL_CUSTOMERS)
    assert th.upgrade_min_merchant_txns == round(50_000 * MANY_ROWS / FULL_ROWS)
    found = detect(_chunks(many.transactions, 10_000), many.importance.read_bytes(), th)
    by_pattern = {p: {(d.customer_id, d.merchant_id) for d in found if d.pattern_id == p}
                  for p in ("PatId1", "PatId2", "PatId3")}
    assert 2 <= len(by_pattern["PatId1"]) <= 10, by_pattern["PatId1"]
    assert {m for _, m in by_pattern["PatId1"]} <= set(TRANSPORT)
    assert 2 <= len(by_pattern["PatId2"]) <= 10
    assert {m for _, m in by_pattern["PatId3"]} == set(DEI_MERCHANTS)


def test_scaled_thresholds_without_customers_scale_both_bars_by_rows():
    assert scaled_thresholds(FULL_ROWS) == {"upgrade_min_merchant_txns": 50_000, "dei_min_female_customers": 100}
    assert scaled_thresholds(ROWS) == scaled_thresholds(ROWS, None) == {"upgrade_min_merchant_txns": 5_045,
                                                                        "dei_min_female_customers": 10}
    assert scaled_thresholds(983_000, 411_200) == {"upgrade_min_merchant_txns": 82_655,
                                                   "dei_min_female_customers": 10_000}
