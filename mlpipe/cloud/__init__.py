"""Managed runs in Google Cloud: compile for Vertex AI Pipelines, submit, and the Cloud Function bundle."""
