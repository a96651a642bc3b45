"""The report of an experiment (`write`) and the results the admin pages read (`run_series`,
`run_summary`, `case_summary`, `compare`): `figures` names and derives, `views` reads, `files`,
`markdown` and `plots` write, `console` prints; `store_files` keeps the files in the database."""

from __future__ import annotations

from shared.bench.report.files import store_files, write
from shared.bench.report.views import case_summary, compare, headline, run_series, run_summary

__all__ = ["case_summary", "compare", "headline", "run_series", "run_summary", "store_files", "write"]
