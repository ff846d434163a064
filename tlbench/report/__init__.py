"""`python -m tlbench.report`: the tables reproduced beside the reported numbers, verdicts, claims, one page.

build.py      the command: read the results, write index.md / index.html, tables/, figures/
aggregate.py  a table's rows from the results: seeds pooled per config, means and intervals
verdicts.py   reproduced vs reported: calibrated verdicts (equivalence and difference tests)
claims.py     the reports' claims tested on the seeds (Welch's t-test)
figures.py    learning curves and per-table plots
templates/    the page's Jinja2 templates (autoescaped HTML)
"""
