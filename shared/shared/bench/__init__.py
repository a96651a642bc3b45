"""The benchmark library (design section 6): experiments of cases and runs, both queues' adapters,
scenarios, metrics, the correctness audit, statistics and the report. `python -m shared.bench` runs it."""
