"""Developer tools run from the checkout as modules (`python -m tools.bench`, `python -m tools.soak`,
`python -m tools.reference_run`); not part of the library."""
