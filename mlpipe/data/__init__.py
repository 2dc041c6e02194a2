"""MNIST source data."""
