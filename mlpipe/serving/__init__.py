"""The serving function: AI Platform Prediction (ml v1) and TF Serving REST over the model registry."""
