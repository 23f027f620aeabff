"""The live state's lookups (txnwatch/detect/key_index.py): exact, whatever the keys and their order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txnwatch.detect import key_index
from txnwatch.detect.key_index import Interner, KeyIndex, to_arrow, utf8_bytes

ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-2**40, 2**40), max_size=40), max_size=12))
def test_int_index_maps_every_key_to_the_row_it_was_added_as(batches):
    index, rows = KeyIndex(), {}
    for batch in batches:
        keys = np.array(list(dict.fromkeys(batch)), dtype=np.int64)
        found = index.find(keys)
        assert found.tolist() == [rows.get(k, -1) for k in keys.tolist()]
        new = keys[found < 0]
        rows.update(zip(new.tolist(), index.add(new).tolist(), strict=True))
    every = np.array(list(rows), dtype=np.int64)
    assert index.find(every).tolist() == list(rows.values()) == list(range(len(rows)))


def test_runs_merge_into_the_main_one_and_stay_exact(monkeypatch):
    monkeypatch.setattr(key_index, "_MIN_RUN", 4)
    index = KeyIndex()
    rng = np.random.default_rng(3)
    keys = rng.permutation(10_000)[:3_000].astype(np.int64)
    for part in np.array_split(keys, 300):
        index.add(part)
    assert index.find(keys).tolist() == list(range(3_000))
    assert (index.find(np.array([10_001, -5])) == -1).all()


def _intern(batches: list[list[str]]) -> tuple[Interner, dict[str, int]]:
    """Each batch through one interner, checking that a string keeps its code and comes back whole."""
    interner, codes = Interner(), {}
    for batch in batches:
        got = interner.codes(pa.array(batch, pa.string()))
        for value, code in zip(batch, got.tolist(), strict=True):
            assert codes.setdefault(value, code) == code
        assert to_arrow(interner.values(got)).to_pylist() == batch
    assert sorted(codes.values()) == list(range(len(codes)))
    return interner, codes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(ids, max_size=20), max_size=8))
def test_interner_gives_one_code_per_distinct_string_and_returns_it(batches):
    _intern(batches)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(ids, max_size=20), max_size=8))
def test_strings_sharing_a_hash_keep_codes_of_their_own(batches):
    weak = lambda values: np.char.str_len(values).astype(np.int64) % 3  # noqa: E731 - collides all the time
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(key_index, "hash64", weak)
        interner, codes = _intern(batches)
        every = list(codes)
        assert interner.find(pa.array(every + ["never seen"], pa.string())).tolist() == [*codes.values(), -1]


def test_an_id_hashes_the_same_at_any_width():
    narrow = utf8_bytes(pa.array(["C1093826151"]))
    assert key_index.hash64(narrow)[0] == key_index.hash64(narrow.astype("S40"))[0]


def test_a_longer_id_widens_the_index_without_losing_the_shorter_ones():
    interner = Interner()
    short = interner.codes(pa.array(["C1", "C22"]))
    long = interner.codes(pa.array(["C1", "C333333333333333", "Ünïcode-客户"]))
    assert long[0] == short[0]
    assert to_arrow(interner.values(np.r_[short, long])).to_pylist() == [
        "C1", "C22", "C1", "C333333333333333", "Ünïcode-客户"]


def test_bytes_compare_as_the_strings_do():
    values = ["b", "a", "ab", "", "é", "z", "Z", "客"]
    as_bytes = utf8_bytes(pa.array(values))
    assert [values[i] for i in np.argsort(as_bytes, kind="stable")] == sorted(values)


def test_utf8_bytes_of_a_slice_reads_only_the_slice():
    col = pa.array(["first", "second", "", "fourth"]).slice(1, 2)
    assert utf8_bytes(col).tolist() == [b"second", b""]
    assert utf8_bytes(pa.chunked_array([col, pa.array(["x"])])).tolist() == [b"second", b"", b"x"]
