"""What a grid file may name, each word with its meaning in one place: datasets, archs, freeze strategies,
augmentations, optimizers and losses.

    registry.py           Registry: names, lookups, "did you mean" suggestions
    datasets.py           every dataset: its pools, classes and loader (torch-free until a loader runs)
    archs.py              the reports' archs and any torchvision classifier by name: head, cost, GPU share
    torchvision_archs.py  the torch-free table of torchvision's classifiers (regenerated from torchvision)
    freezing.py           freeze strategies: their check, canonical spelling and what trains
    augmentations.py      train.augment's words: what each does to a batch, and whether the feature cache serves it
    optimizers.py         optimizers: the torch optimizer each train.optimizer word builds
    losses.py             losses and class weightings: the criterion each train.loss word builds, its head's outputs

Torch-free: the driver validates grid files with these on machines without torch.
"""
