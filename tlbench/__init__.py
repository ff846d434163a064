"""tlbench: re-run grids of transfer-learning experiments with Ray Tune; results in Parquet; the reports'
tables reproduced beside the published numbers. The README's "Code map" says which module holds what."""
