"""Users\x27 labels for served predictions and new examples, written to BigQuery DATASET.feedback."""
