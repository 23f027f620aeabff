"""Layouts are detected from the header; rows normalise to canonical columns or a reason to reject."""

from __future__ import annotations

import io

import pytest

from txnwatch.core.errors import TxnwatchError
from txnwatch.ingest.layouts import importance_layout, transaction_layout
from txnwatch.ingest.rows import read_records

BANKSIM_HEADER = "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud".split(",")
CANONICAL_HEADER = "transactionId,customerId,customerName,merchantId,amount,transactionType,gender,timestamp"


def banksim_fields(line: str) -> list[str]:
    return next(read_records(io.StringIO(line), "t", quotechar="'")).fields


def test_banksim_header_is_detected():
    assert transaction_layout(BANKSIM_HEADER, "t").name == "banksim"


def test_canonical_header_in_any_order_is_detected():
    names = CANONICAL_HEADER.split(",")[::-1]
    assert transaction_layout(names, "t").name == "canonical"


def test_unknown_header_is_one_clear_error():
    with pytest.raises(TxnwatchError, match="unknown transactions header 'a,b,c'") as err:
        transaction_layout(["a", "b", "c"], "t")
    assert "\n" not in str(err.value)


def test_banksim_row_loses_its_quotes_and_gains_id_name_and_timestamp():
    layout = transaction_layout(BANKSIM_HEADER, "t")
    row = layout.normalise(41, banksim_fields(
        "3,'C1093826151','4','M','28007','M348934600','28007','es_transportation',4.55,0\n"))
    assert row == ["41", "C1093826151", "C1093826151", "M348934600", "4.55", "es_transportation", "M", "3"]


def test_canonical_row_keeps_its_values_in_canonical_order():
    names = ["gender", *[c for c in CANONICAL_HEADER.split(",") if c != "gender"], "extra"]
    layout = transaction_layout(names, "t")
    row = layout.normalise(0, ["F", "t9", "C1", "Asha Rao, Jr", "M1", "12.5", "food", "2024-01-01", "x"])
    assert row == ["t9", "C1", "Asha Rao, Jr", "M1", "12.5", "food", "F", "2024-01-01"]


@pytest.mark.parametrize(("line", "reason"), [
    ("0,'C1','4','M','28007','M3','28007','es_food',4.55\n", "wrong field count: 9, expected 10"),
    ("0,'C1','4','M','28007','M3','28007','es_food',abc,0\n", "non-numeric amount: 'abc'"),
    ("0,'C1','4','M','28007','M3','28007','es_food','12,5',0\n", "non-numeric amount: '12,5'"),
    ("0,'C1','4','M','28007','M3','28007','es_food',nan,0\n", "non-numeric amount: 'nan'"),
    ("0,'C1','4','M','28007','M3','28007','es_food',inf,0\n", "non-numeric amount: 'inf'"),
    ("0,'C1','4','M','28007','M3','28007','es_food',,0\n", "non-numeric amount: ''"),
    ("0,'','4','M','28007','M3','28007','es_food',1.0,0\n", "empty customer id"),
    ("0,'C1','4','M','28007','','28007','es_food',1.0,0\n", "empty merchant id"),
])
def test_invalid_rows_are_rejected_with_a_reason(line, reason):
    layout = transaction_layout(BANKSIM_HEADER, "t")
    assert layout.normalise(0, banksim_fields(line)) == reason


@pytest.mark.parametrize("amount", ["0", "12", "-3.5", ".5", "1e3", "2.50"])
def test_plain_decimal_amounts_are_accepted(amount):
    layout = transaction_layout(CANONICAL_HEADER.split(","), "t")
    assert isinstance(layout.normalise(0, ["1", "C1", "n", "M1", amount, "food", "F", "0"]), list)


def test_banksim_network_importance_layout():
    layout = importance_layout(["Source", "Target", "Weight", "typeTrans", "fraud"], "i")
    assert layout.normalise(["'C1'", "'M2'", "0.25", "'es_food'", "0"]) == ["C1", "M2", "es_food", "0.25"]


def test_canonical_importance_without_merchant_leaves_it_empty():
    layout = importance_layout(["customerId", "transactionType", "weight"], "i")
    assert layout.normalise(["C1", "es_food", "3"]) == ["C1", "", "es_food", "3"]


def test_importance_rows_with_bad_weight_are_rejected():
    layout = importance_layout(["customerId", "merchantId", "transactionType", "weight"], "i")
    assert layout.normalise(["C1", "M1", "es_food", "heavy"]) == "non-numeric weight: 'heavy'"


def test_unknown_importance_header_is_one_clear_error():
    with pytest.raises(TxnwatchError, match="unknown importance header"):
        importance_layout(["who", "what"], "i")
