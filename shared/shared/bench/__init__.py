"""The benchmark library (docs/benchmark.md): experiments of cases and runs, both queues' adapters,
scenarios, metrics, the correctness audit, statistics and the report. `python -m shared.bench` runs it."""
