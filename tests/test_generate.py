"""`txnwatch generate`: seeded BankSim-shaped data in both layouts, on which all three rules fire."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.x_rules import detections, load_transactions
from txnwatch.core.landing import CANONICAL_COLUMNS
from txnwatch.generate import DEI_MERCHANTS, FULL_CUSTOMERS, FULL_ROWS, TRANSPORT, generate, scaled_thresholds
from txnwatch.ingest.job import run_ingest

ROWS = 60_000


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
