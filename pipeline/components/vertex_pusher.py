"""Pusher to a Vertex AI endpoint that also retires old deployments.

TFX 1.15.1's AI Platform Pusher in Vertex mode (`ai_platform_enable_vertex`) uploads the SavedModel to
the Vertex AI Model Registry as a new model `v<unix time>` and deploys it to the endpoint named
`endpoint_name` with `traffic_percentage` 100 (`VertexPredictionClient.deploy_model` in
tfx/extensions/google_cloud_ai_platform/prediction_clients.py). aiplatform's `Model.deploy` then sets
every other deployed model's traffic to 0 %, but TFX never undeploys anything: each old model keeps
its node (and its bill) running. This executor runs TFX's push unchanged, then undeploys every model
on the endpoint except the new one and the `keep_previous` most recently deployed others (kept at 0 %
traffic for an instant rollback: `gcloud ai endpoints update … --traffic-split`). Undeployed models
stay in the Model Registry (deleting them is left to the user; they cost storage only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.pusher import component as ai_platform_pusher_component
from tfx.extensions.google_cloud_ai_platform.pusher import executor as ai_platform_pusher
from tfx.types import artifact_utils, standard_component_specs

log = logging.getLogger(__name__)

# Our key in the Pusher's custom_config (TFX's executor ignores keys it does not know).
KEEP_PREVIOUS_KEY = "mlpipe_keep_previous"


@dataclass(frozen=True)
class Deployed:
    """One model deployed to an endpoint, as `Endpoint.list_models()` describes it."""

    deployed_model_id: str
    model: str  # projects/P/locations/R/models/ID (P may be the project number)
    create_time: str  # RFC 3339; sorts chronologically


def models_to_undeploy(deployed: Sequence[Deployed], new_model: str, keep_previous: int) -> list[str]:
    """Deployed-model ids to undeploy: all but the new model and the `keep_previous` newest others."""
    new_id = _model_id(new_model)
    others = sorted((d for d in deployed if _model_id(d.model) != new_id),
                    key=lambda d: d.create_time, reverse=True)
    return [d.deployed_model_id for d in others[max(keep_previous, 0):]]


def _model_id(resource_name: str) -> str:
    # The project part differs (id vs number) between what upload returns and what the endpoint lists.
    return resource_name.rstrip("/").rsplit("/", 1)[-1]


class Executor(ai_platform_pusher.Executor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]):
        super().Do(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not pushed.get_int_custom_property("pushed"):
            return
        config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        undeploy_previous(config, pushed.get_string_custom_property("pushed_destination"))


def undeploy_previous(config: dict[str, Any], new_model: str) -> list[str]:
    """Undeploy what `models_to_undeploy` names from the endpoint of `config` (the Pusher's custom_config)."""
    from google.cloud import aiplatform
    from tfx.extensions.google_cloud_ai_platform import constants

    serving = config[constants.SERVING_ARGS_KEY]
    aiplatform.init(project=serving.get("project_id") or serving.get("project"),
                    location=config[constants.VERTEX_REGION_KEY])
    endpoint = aiplatform.Endpoint.list(filter=f'display_name="{serving["endpoint_name"]}"')[0]
    deployed = [Deployed(m.id, m.model, m.create_time.isoformat() if hasattr(m.create_time, "isoformat")
                         else str(m.create_time)) for m in endpoint.list_models()]
    ids = models_to_undeploy(deployed, new_model, int(config.get(KEEP_PREVIOUS_KEY, 1)))
    for deployed_model_id in ids:
        log.info("undeploying %s from endpoint %s", deployed_model_id, endpoint.resource_name)
        endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)
    return ids


class VertexPusher(ai_platform_pusher_component.Pusher):
    """TFX's AI Platform Pusher (use it in Vertex mode) with the executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
