"""Records stream with their source line and raw text; a damaged record is a fault, never a stopped read."""

from __future__ import annotations

import codecs
import io

from txnwatch.ingest.compressed import text_stream
from txnwatch.ingest.rows import MAX_RECORD_CHARS, RAW_KEEP_CHARS, escape_raw, read_records


def records_of(data: bytes, quotechar: str = '"'):
    return list(read_records(text_stream(io.BytesIO(data)), "t", quotechar))


def test_records_carry_their_source_line_and_raw_text():
    text = 'h1,h2\n\n1,"two\nlines"\n3,4\r\n'
    records = list(read_records(io.StringIO(text, newline=""), "t"))
    assert [(r.line, r.raw) for r in records] == [(1, "h1,h2"), (3, '1,"two\nlines"'), (5, "3,4")]
    assert records[1].fields == ["1", "two\nlines"]
    assert all(r.fault is None for r in records)


def test_a_row_that_is_not_utf8_is_a_fault_and_the_rows_after_it_are_read():
    records = records_of(b"a,b\ncaf\xe9,1\nok,2\n")
    assert [(r.line, r.fault) for r in records] == [(1, None), (2, "not UTF-8 text (byte 0xe9)"), (3, None)]
    assert records[1].fields == []
    assert records[2].fields == ["ok", "2"]


def test_an_over_long_line_is_a_fault_that_keeps_the_head_of_its_text():
    long_field = "x" * (5 * 1024 * 1024)
    records = records_of(f"a,b\n1,{long_field}\n2,ok\n".encode())
    assert [(r.line, r.fields) for r in records] == [(1, ["a", "b"]), (2, []), (3, ["2", "ok"])]
    assert records[1].fault == (f"record too long: {len(long_field) + 3} characters, over the limit of "
                                f"{MAX_RECORD_CHARS} (raw keeps the first {RAW_KEEP_CHARS})")
    assert records[1].raw == ("1," + long_field)[:RAW_KEEP_CHARS]


def test_a_quote_left_open_to_the_end_of_the_file_is_one_over_long_record():
    rows = "".join(f"{i},{'y' * 50}\n" for i in range(5000))
    records = records_of(f'a,b\n1,"open\n{rows}'.encode())
    assert records[1].line == 2 and records[1].fault.startswith("record too long")
    # After the over-long record the reader resynchronises on the next physical line, lines still counted.
    assert all(r.fault is None for r in records[2:])
    assert (records[-1].line, records[-1].fields) == (5002, ["4999", "y" * 50])
    lines = [r.line for r in records[2:]]
    assert lines == list(range(lines[0], 5003)) and lines[0] > 3


def test_escaped_raw_gives_back_the_source_bytes():
    source = b"C\\1,caf\xe9,\xff\xfe,\xc3\xa9"
    (record,) = records_of(source + b"\n")
    escaped = escape_raw(record.raw)
    assert escaped == "C\\\\1,caf\\xe9,\\xff\\xfe,\u00e9"
    assert codecs.escape_decode(escaped.encode("utf-8"))[0] == source
