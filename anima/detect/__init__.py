"""Detection: the synthetic-video classifier and its training, and batch scans (``scan``, with
their reports in ``report``).

``detect`` never imports ``flows``: a scan is handed the per-file check as a picklable function, so
the engine runs it in worker processes or Ray tasks without knowing what it decides.
"""
