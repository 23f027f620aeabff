"""txnwatch's test suite. Shared helpers are modules of this package (`tests.helpers`, `tests.x_data`,
`tests.y_data`, `tests.reference_rules`, ...), imported as `tests.<module>` by tests and tools alike."""
