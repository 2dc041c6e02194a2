"""ML Metadata, read: the store as a graph (graph.py), pipeline runs (runs.py) and what the artifacts'
files say (payloads.py). The one reader for the run summary, `mlpipe runs`, lineage and the console."""
