"""What measures the product rather than being it: accuracy evaluation, metrics and datasets,
jitter, the int8 calibration, every benchmark, and the browser harness the e2e tests and
`benchmark-live` share. Imported by cli/ and tests/ only, never by the product.

May import: core, weights, engine, render, io, batch, dashboard.
"""
