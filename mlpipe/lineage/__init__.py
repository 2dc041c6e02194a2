"""Lineage from ML Metadata: from a served version back to the BigQuery data, runs, and the reverse."""
