"""One trial, start to finish, in a worker process: plain Python a test calls directly.

execute.py      execute(spec): the trial's row, whatever happens (ok, diverged, error, oom)
config.py       TrialConfig: the typed config a trial reads
train.py        run_trial -> build -> fit -> run_epoch -> train_steps / evaluate -> summarise, top to bottom
speed_path.py   speed_path: which network the loop steps (whole, or the cache's suffix), on what, in which precision
quirks.py       the reports' quirks (train mode, per-epoch optimizer, lr probe, ...), each citing its report line
data.py         the splits a trial trains, validates and tests on, and their decode caches
pools.py        a dataset's pools of images and labels, read defensively
synthetic.py    generated images with known classes (the smoke profile, the tests)
pipeline.py     batches on the device: order, pools on the card, augment, normalise
resize.py       small images kept small, enlarged where a batch is used
host_reads.py   counting reads of tensor values back to the host (a step must make none)
networks.py     the network with its task head, and what trains (the small CNN is tlbench/tiny.py)
features.py     the frozen-feature cache, cut where tracing says
autotune.py     `precision: auto` by measurement
memory.py       GPU memory caps, peaks and the data's part
checkpoint.py   TrainingState, and a trial's state between epochs on disk (tensors and plain values only)
metrics.py      classification metrics
thumbnails.py   misclassified images for the report
"""
