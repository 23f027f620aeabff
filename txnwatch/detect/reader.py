"""Reading landed chunks into Spark and validating their rows; reading the importance file with Arrow.

Locally (and with `TXNWATCH_SPARK_NATIVE_S3=1`, e.g. on Databricks) Spark reads the CSV itself. For
`s3://` on a machine without the hadoop-aws jars the driver fetches the object with boto3, parses it
with the csv module and hands Spark an Arrow table: a chunk is ~1 MB, so this costs little and keeps
one code path for everything after the read.

Whatever the path, a chunk becomes one DataFrame with the canonical columns as strings plus `chunk`,
`_row` (locating the row in its file, see `_numbered`) and `_corrupt_record` (the raw text of a row with
the wrong number of fields). Validation and aggregation are then the same Spark code.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from txnwatch.core.errors import first_line
from txnwatch.core.landing import CANONICAL_COLUMNS, IMPORTANCE_COLUMNS, REFERENCE_KEY, chunk_key
from txnwatch.core.retry import is_transient
from txnwatch.core.storage import S3Store, Store
from txnwatch.detect.shapes import AMOUNT_PRECISION, AMOUNT_SCALE

log = logging.getLogger("txnwatch.detect")

CORRUPT = "_corrupt_record"
AMOUNT_TYPE = T.DecimalType(AMOUNT_PRECISION, AMOUNT_SCALE)
_HEADER_PROBE_BYTES = 65536
# Internal column: the row's monotonically increasing id (native reads) or row index (driver reads).
_ROW = "_row"

RAW_SCHEMA = T.StructType(
    [T.StructField(c, T.StringType()) for c in CANONICAL_COLUMNS] + [T.StructField(CORRUPT, T.StringType())]
)

def native_s3() -> bool:
    return os.environ.get("TXNWATCH_SPARK_NATIVE_S3", "") in ("1", "true", "yes")


def s3a_path(bucket: str, object_key: str) -> str:
    """The Hadoop s3a URI of an S3 object (what Spark reads natively on Databricks or with hadoop-aws)."""
    return f"s3a://{bucket}/{object_key.lstrip('/')}"


def spark_path(store: Store, key: str) -> str | None:
    """Where Spark can read `key` itself, or None when the driver must fetch the bytes."""
    local = store.local_path(key)
    if local is not None:
        return local
    if isinstance(store, S3Store) and native_s3():
        return s3a_path(store.bucket, store._key(key))
    return None


class ChunkUnreadable(Exception):
    """The whole chunk cannot be used: wrong header, not text, empty object. Quarantined as one entry."""


def _head_bytes(store: Store, key: str) -> bytes:
    local = store.local_path(key)
    if local is not None:
        with open(local, "rb") as f:
            return f.read(_HEADER_PROBE_BYTES)
    if isinstance(store, S3Store):
        obj = store.client.get_object(Bucket=store.bucket, Key=store._key(key),
                                      Range=f"bytes=0-{_HEADER_PROBE_BYTES - 1}")
        return obj["Body"].read()
    return store.get(key)[:_HEADER_PROBE_BYTES]


def _check_header(data: bytes, expected: tuple[str, ...], what: str) -> None:
    if not data:
        raise ChunkUnreadable(f"empty object: {what} has no header")
    first = data.split(b"\n", 1)[0]
    try:
        text = first.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    except UnicodeDecodeError:
        raise ChunkUnreadable(f"unreadable: {what} is not UTF-8 text") from None
    header = tuple(next(csv.reader([text]), []))
    if header != expected:
        raise ChunkUnreadable(f"wrong header in {what}: expected {','.join(expected)}, got {text[:200]!r}")


def check_chunk_header(store: Store, k: int) -> None:
    """Raise ChunkUnreadable unless chunk k starts with the canonical header."""
    key = chunk_key(k)
    try:
        data = _head_bytes(store, key)
    except ChunkUnreadable:
        raise
    except Exception as e:  # noqa: BLE001 - any storage failure but an outage makes this one chunk unusable
        if is_transient(e):
            raise  # the store is down, not the chunk bad: the batch is retried (retry.py)
        raise ChunkUnreadable(f"unreadable: {store.uri(key)}: {e}") from None
    _check_header(data, CANONICAL_COLUMNS, store.uri(key))


def _parse_on_driver(data: bytes, columns: tuple[str, ...], what: str) -> pa.Table:
    """CSV bytes -> Arrow table of strings (+ `_row`, `_corrupt_record`), for stores Spark cannot read.
    `_row` is the row's line in the file less 2 (header = line 1), so `_numbered` gives the line back."""
    _check_header(data, columns, what)
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise ChunkUnreadable(f"unreadable: {what} is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    cols: list[list[str | None]] = [[] for _ in columns]
    lines: list[int] = []
    corrupt: list[str | None] = []
    width = len(columns)
    for rec in reader:
        if not rec:  # blank line: Spark skips these too
            continue
        lines.append(reader.line_num)
        if len(rec) == width:
            for i, v in enumerate(rec):
                cols[i].append(v)
            corrupt.append(None)
        else:
            for i in range(width):
                cols[i].append(rec[i] if i < len(rec) else None)
            corrupt.append(",".join(rec))
    arrays = {c: pa.array(v, pa.string()) for c, v in zip(columns, cols, strict=True)}
    arrays[CORRUPT] = pa.array(corrupt, pa.string())
    arrays[_ROW] = pa.array([n - 2 for n in lines], pa.int64())
    return pa.table(arrays)


def _native_frame(spark: SparkSession, paths: list[str]) -> DataFrame:
    """One scan over all the batch's files; the chunk number comes from each row's file path (not a
    literal, so the generated code is the same for every batch and Spark's codegen cache is hit)."""
    # nullValue/emptyValue keep "" as "" (not null): an empty name is a value, an empty id a rejection.
    df = spark.read.csv(paths, schema=RAW_SCHEMA, header=True, mode="PERMISSIVE",
                        columnNameOfCorruptRecord=CORRUPT, nullValue="\u0000", emptyValue="")
    return df.select(*_native_columns())


@functools.cache
def _native_columns() -> list[Column]:
    # A chunk file (~1 MB) is never split, and its rows are consecutive in its partition: a row's id
    # minus the smallest id of its file is its row index, however files are packed into partitions
    # (a setting that gave each file its own partition is not available on serverless compute).
    row = F.monotonically_increasing_id()
    chunk = F.regexp_extract(F.col("_metadata.file_path"), r"chunk_(\d{8})/[^/]*$", 1).cast("int")
    return [*[F.col(c) for c in (*CANONICAL_COLUMNS, CORRUPT)], row.alias(_ROW), chunk.alias("chunk")]


def _driver_table(store: Store, k: int) -> pa.Table:
    key = chunk_key(k)
    try:
        data = store.get(key)
    except Exception as e:  # noqa: BLE001
        if is_transient(e):
            raise
        raise ChunkUnreadable(f"unreadable: {store.uri(key)}: {e}") from None
    table = _parse_on_driver(data, CANONICAL_COLUMNS, store.uri(key))
    return table.append_column("chunk", pa.array([k] * table.num_rows, pa.int32()))


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


@functools.cache
def _delta_columns() -> tuple[list[Column], list[Column], list[Column], list[Column], list[Column]]:
    """The Column expressions of chunk_deltas, built once per process: every F.* call is a round trip
    to the JVM, and rebuilding these ~60 per batch cost ~0.1 s of the 1 s lag budget."""
    # Parsed once per row, in the projection before the aggregation, and reused by the reason and the sum.
    amount = F.col("_amount")
    reason = (F.when(F.col(CORRUPT).isNotNull(), F.lit("wrong field count"))
              .when(_blank(F.col("customerId")), F.lit("empty customerId"))
              .when(_blank(F.col("merchantId")), F.lit("empty merchantId"))
              .when(amount.isNull(), F.lit("non-numeric amount")))
    good = F.col("_reason").isNull()
    name = F.when(_blank(F.col("customerName")), F.col("customerId")).otherwise(F.col("customerName"))
    raw_text = F.coalesce(F.col(CORRUPT), F.concat_ws(",", *[F.coalesce(F.col(c), F.lit(""))
                                                              for c in CANONICAL_COLUMNS]))
    parsed = [F.col("*"), F.col("amount").try_cast(AMOUNT_TYPE).alias("_amount")]
    pre = [F.col("*"), reason.alias("_reason")]
    # Every string is a grouping key, none an aggregate: a string aggregate (max, first) has no fixed-width
    # buffer and turns Spark's plan into two sorts and a sort-based aggregation; with fixed-width buffers
    # only, it is one code-generated hash aggregation (a 60-chunk batch 25% faster). A rejected row is its
    # own group (keyed by its row id), so its reason and text as keys group nothing more; the name as a key
    # splits a pair only when its customer went by two names in one chunk (`_one_row_per_pair` folds them).
    keys = [F.col("chunk"), F.when(good, F.col("customerId")).alias("customer_id"),
            F.when(good, F.col("merchantId")).alias("merchant_id"),
            F.when(~good, F.col(_ROW)).cast("long").alias("line"), F.when(good, name).alias("name"),
            F.col("_reason").alias("reason"), F.when(~good, raw_text).alias("raw")]
    aggs = [F.count(F.lit(1)).alias("n"), F.sum(F.when(good, amount)).cast(AMOUNT_TYPE).alias("s"),
            F.max(F.col("gender") == "F").alias("has_f"), F.max(F.col("gender") == "M").alias("has_m"),
            F.min(_ROW).alias("_first")]
    out = [F.when(F.col("reason").isNull(), "d").otherwise("q").alias("kind"),
           *[F.col(c) for c in ("chunk", "customer_id", "merchant_id", "n", "s", "name", "has_f", "has_m",
                                "line", "reason", "raw", "_first")]]
    return parsed, pre, keys, aggs, out


def chunk_deltas(raw: DataFrame) -> DataFrame:
    """Validated rows aggregated per (chunk, customer, merchant), plus the rejected rows: shapes.COLLECTED.

    One aggregation serves both (a rejected row is its own group, keyed by its line), so the file is
    scanned once and shuffled once. The customer's name is the greatest non-empty customerName seen
    (the id when none): deterministic whatever order rows arrive in. A pair may come as one row per name
    its customer went by in the chunk: `_one_row_per_pair` folds them on the driver.
    """
    parsed, pre, keys, aggs, out = _delta_columns()
    return raw.select(*parsed).select(*pre).groupBy(*keys).agg(*aggs).select(*out)


@dataclass
class ChunkRead:
    chunk: int
    unreadable: str | None = None  # reason the whole chunk was quarantined


def _numbered(deltas: pa.Table, per_file: bool) -> pa.Table:
    """DELTA_SCHEMA's columns, with `line` of a rejected row its 1-based line in its file (header = 1).

    Native reads carry row ids that count up within each file: the line is the id less the smallest id
    of its file (`_first`, the minimum over the chunk's groups), plus 2. Driver reads carry line - 2.
    """
    base: pa.Array | int = 0
    # Only rejected rows carry a line: a batch without any (most of them) skips the per-file grouping.
    if per_file and deltas["line"].null_count < deltas.num_rows:
        firsts = deltas.group_by("chunk").aggregate([("_first", "min")])
        base = pc.take(firsts["_first_min"], pc.index_in(deltas["chunk"], value_set=firsts["chunk"]))
    line = pc.add(pc.subtract(deltas["line"], base), 2)
    deltas = deltas.set_column(deltas.schema.get_field_index("line"), "line", line)
    return deltas.drop_columns(["_first"])


_PAIR_KEY = ["chunk", "customer_id", "merchant_id"]
_FOLD = [("n", "sum"), ("s", "sum"), ("name", "max"), ("has_f", "any"), ("has_m", "any")]


def _one_row_per_pair(collected: pa.Table) -> pa.Table:
    """COLLECTED with one DELTA row per (chunk, customer, merchant), as the live state expects.

    Spark groups by the name too (`_delta_columns`), so a customer who went by two names in one chunk
    comes as two rows of the pair; they are folded here, the greatest name kept. Arrow's hash aggregation
    on the driver: ~0.3 µs a row, against the ~1 s a 60-chunk batch saves in Spark."""
    is_delta = pc.equal(collected["kind"], "d")
    deltas = collected.filter(is_delta)
    folded = deltas.group_by(_PAIR_KEY, use_threads=False).aggregate(_FOLD)
    if folded.num_rows == deltas.num_rows:
        return collected
    n, schema = folded.num_rows, collected.schema
    columns = {"kind": pa.repeat(pa.scalar("d", schema.field("kind").type), n),
               **{key: folded[key] for key in _PAIR_KEY},
               **{column: folded[f"{column}_{how}"] for column, how in _FOLD},
               **{column: pa.nulls(n, schema.field(column).type) for column in ("line", "reason", "raw")}}
    merged = pa.table([columns[f.name].cast(f.type) for f in schema], schema=schema)
    return pa.concat_tables([merged, collected.filter(pc.invert(is_delta))])


def _collect(spark: SparkSession, paths: list[str], tables: list[pa.Table]) -> pa.Table:
    raw = _native_frame(spark, paths) if paths else spark.createDataFrame(pa.concat_tables(tables))
    return _one_row_per_pair(_numbered(chunk_deltas(raw).toArrow(), per_file=bool(paths)))


def read_deltas(spark: SparkSession, store: Store,
                chunks: list[int]) -> tuple[pa.Table | None, list[ChunkRead]]:
    """One Spark job for a batch: the deltas and rejected rows of all readable chunks, as Arrow.

    If Spark fails on the batch (a file that vanished or cannot be decoded), the chunks are retried one
    by one, twice each; a chunk that still fails is quarantined whole, unless Spark itself is down, in
    which case the error propagates (a restart resumes at the same chunk: nothing is skipped).
    """
    reads = []
    items: list[tuple[int, str | None, pa.Table | None]] = []
    for k in chunks:
        try:
            path = spark_path(store, chunk_key(k))
            if path is not None:
                check_chunk_header(store, k)
                items.append((k, path, None))
            else:
                items.append((k, None, _driver_table(store, k)))
            reads.append(ChunkRead(k))
        except ChunkUnreadable as e:
            log.warning("chunk %d quarantined: %s", k, e)
            reads.append(ChunkRead(k, unreadable=str(e)))
    if not items:
        return None, reads
    try:
        return _collect(spark, [p for _, p, _ in items if p], [t for _, _, t in items if t is not None]), reads
    except Exception as e:  # noqa: BLE001 - narrowed below, chunk by chunk
        log.warning("Spark failed on chunks %d-%d (%s): retrying them one by one", chunks[0], chunks[-1],
                    first_line(e, limit=300))
    parts = []
    by_chunk = {r.chunk: r for r in reads}
    for k, path, table in items:
        for attempt in (1, 2):
            try:
                parts.append(_collect(spark, [path] if path else [], [table] if table is not None else []))
                break
            except Exception as e:  # noqa: BLE001
                spark.range(1).count()  # Spark itself down? Then this raises and the job stops here.
                store.exists(chunk_key(k))  # the store down? Then this raises and the batch is retried.
                if attempt == 2:
                    reason = f"unreadable: Spark could not read {store.uri(chunk_key(k))}: {first_line(e, limit=300)}"
                    log.warning("chunk %d quarantined: %s", k, reason)
                    by_chunk[k].unreadable = reason
    return (pa.concat_tables(parts) if parts else None), reads


def read_importance(store: Store) -> pa.Table | None:
    """The published importance file as an Arrow table of strings, or None (logged) if absent or unusable.

    Read on the driver with Arrow's CSV reader, not by Spark: the file is read once per run and the driver
    holds its aggregate anyway, and a Spark job over it would share the cores with the first chunks for
    seconds (at 100x the customers the Spark job took 7 s, Arrow's read and aggregation 0.9 s). One
    thread, the caller's: the weights' loader runs at low priority (batch.Batches). A row with the wrong
    number of fields is skipped and counted, as Spark's DROPMALFORMED did."""
    what = store.uri(REFERENCE_KEY)
    if not store.exists(REFERENCE_KEY):
        log.warning("no importance file at %s: every customer is treated as having no weight", what)
        return None
    try:
        _check_header(_head_bytes(store, REFERENCE_KEY), IMPORTANCE_COLUMNS, what)
        local = store.local_path(REFERENCE_KEY)
        source = local if local is not None else pa.BufferReader(store.get(REFERENCE_KEY))
        skipped = 0

        def skip(row) -> str:
            nonlocal skipped
            skipped += 1
            return "skip"

        table = pacsv.read_csv(
            source, read_options=pacsv.ReadOptions(column_names=list(IMPORTANCE_COLUMNS), skip_rows=1,
                                                   use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in IMPORTANCE_COLUMNS},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except ChunkUnreadable as e:
        log.warning("importance file unusable (%s): every customer is treated as having no weight", e)
        return None
    except pa.ArrowInvalid as e:
        log.warning("importance file unusable (%s: %s): every customer is treated as having no weight", what,
                    first_line(e, limit=200))
        return None
    if skipped:
        log.warning("importance file %s: %d rows with the wrong number of fields ignored", what, skipped)
    return table
