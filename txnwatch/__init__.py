"""txnwatch: replay a bank transaction feed as a stream and watch it for customer patterns."""

__version__ = "0.1.0"
