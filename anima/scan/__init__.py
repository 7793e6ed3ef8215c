"""Batch scans: many files verified in parallel (process pool or Ray), each content once, resumable,
written as JSONL, CSV and an HTML report.

``scan`` never imports the API: it is handed the per-file check as a picklable callable, so the
engine runs it in worker processes or Ray tasks without knowing what it decides.
"""

# Parallel workers a scan may ask for (here, not in the engine, so that the CLI's option reads it
# without importing the engine).
MAX_WORKERS = 256
