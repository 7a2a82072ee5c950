"""Notebooks: a papermill scheduler with Spark jobs, and Jupyter server extensions."""
