"""What a run leaves on disk and how it is read back, defensively.

columns.py        every column of a trial row and an epoch row, declared once: the schemas, labels and typed rows derive from it
store.py          one atomic Parquet file per trial and per trial's epochs; the results index
provenance.py     the commit, software and machine a row was measured on
regular_files.py  opening files a neighbour may have planted (no FIFOs, no links followed, bounded sizes)
"""
