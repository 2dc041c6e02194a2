"""Packaging: the `mlpipe` library and CLI, plus the TFX `pipeline` and `models` packages."""

from setuptools import find_packages, setup

setup(
    name="mnist-automl-pipeline",
    version="0.1.0",
    description="MNIST MLOps: BigQuery → TFX + AdaNet → versioned registry → serverless serving",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["mlpipe", "mlpipe.*", "pipeline", "pipeline.*", "models", "models.*"]),
    package_data={"pipeline": ["schema/*.pbtxt"], "mlpipe": ["serving/*.json"]},
    # Dependencies are pinned in requirements.lock (uv-compiled) and installed by `make setup`;
    # adanet is installed with --no-deps because its metadata pins fight the TFX stack.
    install_requires=[],
    entry_points={"console_scripts": ["mlpipe=mlpipe.cli:main"]},
)
