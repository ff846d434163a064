"""Everything that touches Ray, and nothing else does (`tests/test_layout.py` checks it).

    driver.py      the Ray Tune run: one trial per Tune trial with its resources, results into the store
    loggers.py     the Tune logger callbacks: TensorBoard by default, MLflow and W&B on request
    storage.py     --storage checked before anything is submitted: its form, and that every node sees a path

A trial itself (`tlbench.trial.execute.execute` -> `tlbench.trial.train.run_trial`) is plain Python that a test calls directly.
"""
