"""Deciding and watching a run from the driver, without torch or Ray.

cost.py      a trial's FLOPs, images and GPU-hours on paper
makespan.py  wall time of a set of trials on N devices, packed longest first
shares.py    GPU shares: asked, measured, doubled after an out-of-memory
progress.py  the live progress line and its ETA
status.py    `grid status`: per experiment, done / diverged / errored / running / pending
leases.py    which driver runs which trial (claim files), so two drivers never run one trial
"""
