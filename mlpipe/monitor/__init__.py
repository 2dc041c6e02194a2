"""Drift monitoring of served instances against the serving model's training data (`mlpipe monitor`)."""
