"""On PYTHONPATH for the processes a local run starts: see sitecustomize.py."""
