"""tlbench: re-run grids of transfer-learning experiments with Ray Tune; results in Parquet; the reports'
tables reproduced beside the published numbers. The README's "Code map" names the folders; each folder's __init__.py says what each of its modules holds."""
