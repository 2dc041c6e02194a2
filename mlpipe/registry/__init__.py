"""Versioned model registry (versions, default, aliases, metadata) on atomic local storage."""

from mlpipe.registry.metadata import PushMetadata
from mlpipe.registry.names import validate_name
from mlpipe.registry.registry import Registry, VersionInfo

__all__ = ["PushMetadata", "Registry", "VersionInfo", "validate_name"]
