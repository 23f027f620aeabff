import sys

from txnwatch.cli import main

sys.exit(main())
