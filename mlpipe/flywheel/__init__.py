"""The feedback flywheel: decide from drift, labels and time whether to retrain, roll out, promote."""
