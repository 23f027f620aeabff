"""`txnwatch` command line (SPEC section 7). Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from txnwatch.core import defaults
from txnwatch.core.db import ScrubFilter, scrub
from txnwatch.core.errors import TxnwatchError

# Each sub-command and the module that runs it. A build that leaves a module out (the Databricks wheel holds
# the library Y needs, not the Airflow or local tooling) offers only the commands whose modules it holds.
COMMANDS = {
    "ingest": "txnwatch.ingest.job",
    "detect": "txnwatch.detect.job",
    "generate": "txnwatch.generate",
    "report": "txnwatch.records.report",
    "databricks": "txnwatch.databricks.deploy",
    "airflow": "txnwatch.local.airflow_home",
    "spark-server": "txnwatch.local.spark_server",
}


def available(command: str) -> bool:
    """Whether this installation holds the module of `command` (found without importing it)."""
    try:
        return importlib.util.find_spec(COMMANDS[command]) is not None
    except ModuleNotFoundError:  # its package is missing altogether
        return False


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="txnwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def offer(name: str, **kwargs) -> argparse.ArgumentParser:
        """The sub-command's parser, or a detached one (offered nowhere) when its module is not installed."""
        return sub.add_parser(name, **kwargs) if available(name) else argparse.ArgumentParser(add_help=False)

    def db_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="PostgreSQL URL (default: TXNWATCH_DB_URL, else 127.0.0.1:5432, "
                                    "else an embedded server under .local/)")
        p.add_argument("--schema", default=defaults.SCHEMA, help="schema holding state and checkpoints")

    def retry_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--retry-seconds", type=_non_negative_float, default=defaults.RETRY_SECONDS,
                       help="ride out a PostgreSQL or S3 outage for up to this many seconds before failing "
                            f"(default {defaults.RETRY_SECONDS:g}; 0: fail at once)")

    p = offer("ingest", help="Mechanism X: land the source as chunks, one per interval")
    p.add_argument("--source", required=True, help="transactions CSV (plain, .gz, or a .zip holding it): "
                                                   "path, file://, http(s)://, Google Drive link or id, s3://")
    p.add_argument("--importance", required=True, help="customer importance CSV (same kinds of source)")
    p.add_argument("--landing", required=True, help="landing zone: local folder, file:// or s3://")
    db_args(p)
    p.add_argument("--rows-per-chunk", type=_positive_int, default=defaults.ROWS_PER_CHUNK)
    p.add_argument("--interval", type=_non_negative_float, default=defaults.INTERVAL_S,
                   help="seconds between chunks (0: flat out)")
    p.add_argument("--max-chunks", type=_positive_int, help="replay only the first K chunks")
    p.add_argument("--max-reject-share", type=_share, default=defaults.MAX_REJECT_SHARE,
                   help="stop (landing nothing of it) when more than this share of a chunk's rows is "
                        "rejected: the wrong file, most likely (0: any rejected row; 1: never)")
    retry_args(p)

    p = offer("detect", help="Mechanism Y: the Spark detection job")
    p.add_argument("--landing", required=True)
    p.add_argument("--output", required=True, help="where detection files go: local folder, file:// or s3://")
    db_args(p)
    p.add_argument("--until-end", action="store_true", help="exit 0 after the last chunk _END.json counts")
    p.add_argument("--poll-interval", type=_non_negative_float, default=defaults.POLL_INTERVAL_S,
                   help="seconds between looks")
    p.add_argument("--max-batch-chunks", type=_positive_int, default=defaults.MAX_BATCH_CHUNKS,
                   help="when behind, process up to this many chunks in one Spark pass")
    p.add_argument("--threshold", action="append", metavar="NAME=VALUE",
                   help="override a rule threshold (repeatable), e.g. child_min_txns=80")
    p.add_argument("--db-secret", metavar="SCOPE/KEY",
                   help="read the PostgreSQL URL from this Databricks secret (serverless jobs: no cluster "
                        "environment to carry it)")
    retry_args(p)

    p = offer("generate", help="write a seeded BankSim-shaped data set and its importance file")
    p.add_argument("--rows", type=_positive_int, default=defaults.FULL_ROWS)
    p.add_argument("--customers", type=_positive_int,
                   help="customer count, independent of --rows (default: BankSim's 4,112 scaled by rows)")
    p.add_argument("--steps", type=_positive_int, default=180,
                   help="steps (BankSim's time unit) the rows are spread over (default 180)")
    p.add_argument("--seed", type=int, default=defaults.SEED)
    p.add_argument("--layout", choices=("banksim", "canonical"), default="banksim")
    p.add_argument("--out-dir", required=True)

    p = offer("report", help="per-chunk metrics of the detection job")
    db_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw lag per chunk and detections over time")

    p = offer("databricks", help="build or deploy the library Mechanism Y runs with on Databricks")
    dbx = p.add_subparsers(dest="databricks_command", required=True)
    b = dbx.add_parser("build", help="build the release wheel (version + content hash) into a folder")
    b.add_argument("--out", default="dist", help="folder for the wheel (default: dist)")
    d = dbx.add_parser("deploy", help="build the release and upload it with its entry script (databricks-sdk)")
    d.add_argument("--artifacts", help="Unity Catalog volume (/Volumes/<catalog>/<schema>/<volume>/...) or "
                                       "workspace folder (/Workspace/...); default: TXNWATCH_DATABRICKS_ARTIFACTS, "
                                       "else /Volumes/main/txnwatch/artifacts")
    d.add_argument("--profile", help="~/.databrickscfg profile (default: the SDK's unified authentication, "
                                     "e.g. DATABRICKS_HOST and DATABRICKS_TOKEN)")

    p = offer("spark-server", help="a standing, warm Spark Connect server for Y's local runs (the local "
                                   "stack starts one; Y joins it through TXNWATCH_SPARK_REMOTE)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    p.add_argument("--port", type=_positive_int, default=defaults.SPARK_CONNECT_PORT)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--ready-file", help="written (JSON: remote, up_s, warm_s) once the server is warm")
    p.add_argument("--warm-up-rounds", type=int, default=defaults.SPARK_SERVER_WARM_UP_ROUNDS,
                   help="runs of Y's read plan on a synthetic 10,000-row chunk before the server says it is ready")

    p = offer("airflow", help="run an Airflow CLI command against the project's local Airflow",
                       add_help=False)
    p.add_argument("airflow_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # no password in any log line, whoever logs it
        handler.addFilter(ScrubFilter())
    # Our own INFO lines are the progress report; boto's (where credentials were found) are noise.
    for name in ("botocore", "boto3", "s3transfer", "urllib3", "py4j", "databricks.sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if args.command == "detect":
            from txnwatch.detect.runtime import require_supported_spark

            require_supported_spark()  # before any Spark work: an old runtime fails here with one line
        return int(importlib.import_module(COMMANDS[args.command]).command(args) or 0)
    except TxnwatchError as e:
        print(f"txnwatch {args.command}: error: {scrub(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"txnwatch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
