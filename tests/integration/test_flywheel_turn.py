"""One flywheel turn against real BigQuery (emulator) and a real registry: the challenger's online
accuracy (served predictions joined with later labels) decides, the registry and the decision log
record why."""

from __future__ import annotations

import json

import pytest

from mlpipe import contract
from mlpipe.bigquery.client import bq_client
from mlpipe.flywheel.policy import Policy
from mlpipe.registry import Rollout, registry_for
from tests.contract_models import fake_models  # noqa: F401  (a fixture)

PRED_SCHEMA = (("time", "TIMESTAMP", "REQUIRED"), ("model", "STRING", "REQUIRED"),
               ("version", "STRING", "REQUIRED"), ("predicted_class", "INT64", "REQUIRED"),
               ("prediction_id", "STRING", "NULLABLE"), ("role", "STRING", "NULLABLE"))
FB_SCHEMA = (("feedback_id", "STRING", "REQUIRED"), ("time", "TIMESTAMP", "REQUIRED"),
             ("prediction_id", "STRING", "NULLABLE"), ("label", "INT64", "REQUIRED"),
             ("image", "INT64", "REPEATED"))


def _table(settings, name, schema, rows):
    from google.cloud import bigquery

    client = bq_client(settings)
    client.create_dataset(bigquery.Dataset(f"{settings.project}.{settings.dataset}"), exists_ok=True)
    fields = [bigquery.SchemaField(n, t, mode=m) for n, t, m in schema]
    client.create_table(bigquery.Table(settings.table_id(name), schema=fields), exists_ok=True)
    if rows:
        assert client.insert_rows_json(settings.table_id(name), rows) == []


def _served(version: str, n: int, right: int, role: str, start: int) -> tuple[list[dict], list[dict]]:
    """n predictions of `version`, `right` of them later labelled correctly."""
    preds, labels = [], []
    for i in range(start, start + n):
        pid = f"{i:032x}-0"
        preds.append({"time": "2030-01-01T00:00:00Z", "model": "mnist", "version": version,
                      "predicted_class": 3, "prediction_id": pid, "role": role})
        labels.append({"feedback_id": f"fb{i}", "time": "2030-01-01T00:01:00Z", "prediction_id": pid,
                       "label": 3 if i - start < right else 5, "image": [0] * 784})
    return preds, labels


@pytest.fixture
def rollout(bq_settings, tmp_path, fake_models):  # noqa: F811
    settings = bq_settings.replace(dataset=f"flywheel_{tmp_path.name[-8:].replace('-', '_')}", state_dir=tmp_path)
    reg = registry_for(settings)
    reg.push(fake_models[0])
    reg.push(fake_models[1], challenger=Rollout("", 0.2))
    return settings, reg


def _turn(settings, policy):
    from pipeline.configs import PipelineConfig
    from pipeline.flywheel import turn

    return turn(PipelineConfig.for_profile(settings, "quick"), policy)


@pytest.mark.e2e  # the session's BigQuery emulator
@pytest.mark.parametrize(("right_v2", "action", "default_after"), [(58, "promote", "v2"), (40, "end-rollout", "v1")])
def test_online_accuracy_promotes_or_ends_the_challenger(rollout, right_v2, action, default_after):
    settings, reg = rollout
    p1, f1 = _served("v1", 200, 160, "served", 0)  # 80 %
    p2, f2 = _served("v2", 60, right_v2, "canary", 1000)
    shadow, _ = _served("v2", 50, 0, "shadow", 0)  # v2's shadow copies of v1's labelled answers: not counted
    _table(settings, "predictions", PRED_SCHEMA, p1 + p2 + shadow)
    _table(settings, contract.FEEDBACK_TABLE, FB_SCHEMA, f1 + f2)
    t = _turn(settings, Policy(min_labelled=50))
    assert t.signals.online["v2"].labelled == 60 and t.signals.online["v1"].correct == 160
    assert t.decision.action == action
    assert reg.default_version() == default_after and reg.rollout() is None
    entry = reg.audit()[-1]
    assert entry.actor == "flywheel" and "online accuracy v2" in entry.reason
    logged = [json.loads(line) for line in settings.flywheel_log.read_text().splitlines()]
    assert logged[-1]["decision"]["action"] == action and logged[-1]["signals"]["challenger"] == "v2"


@pytest.mark.e2e
def test_too_little_labelled_traffic_waits(rollout):
    settings, reg = rollout
    p2, f2 = _served("v2", 10, 10, "canary", 0)
    _table(settings, "predictions", PRED_SCHEMA, p2)
    _table(settings, contract.FEEDBACK_TABLE, FB_SCHEMA, f2)
    t = _turn(settings, Policy(min_labelled=50))
    assert (t.decision.action, t.result) == ("wait", "waited")
    assert reg.rollout() == Rollout("v2", 0.2) and reg.default_version() == "v1"
