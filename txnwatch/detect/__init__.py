"""Mechanism Y: the Spark detection job."""
