"""Every default of the product in one place: the CLI, the Airflow operators and forms, and the library
functions read them from here (SPEC sections 3 and 7)."""

SCHEMA = "txnwatch"  # the PostgreSQL schema holding state and checkpoints
ROWS_PER_CHUNK = 10_000  # X: source rows per chunk
INTERVAL_S = 1.0  # X: seconds between chunks (0: flat out)
MAX_REJECT_SHARE = 0.5  # X: stop when more than this share of a chunk's rows is rejected
POLL_INTERVAL_S = 0.1  # Y: seconds between looks at the landing zone
MAX_BATCH_CHUNKS = 16  # Y: chunks per Spark pass when behind
RETRY_SECONDS = 120.0  # X and Y: how long an outage of PostgreSQL or the object store is ridden out
FULL_ROWS = 594_643  # the real BankSim file's size: the generator's and the demo's default
SEED = 7  # the generator's default seed (and the demo data set's)
SPARK_CONNECT_PORT = 15002  # Spark Connect's own default: the local stack's standing Spark listens here
SPARK_SERVER_WARM_UP_ROUNDS = 8  # the standing Spark's runs of Y's read plan before it says it is ready
