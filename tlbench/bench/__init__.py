"""`python -m tlbench.bench`: speed and scale, ratios side by side in one run.

speed.py     the default bench (feature cache, input pipeline, training, precision, step overhead, Ray) and --memory
gpu.py       `--gpu`: tlbench's trainer on a card against a tuned reference loop
scale.py     `--scale`: grid run / list / report at thousands of finished trials
workload.py  what they share: the image folder, the starting trial config, FLOPs per image, the line format
"""
