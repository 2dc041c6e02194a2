"""Which models the Vertex pusher undeploys after TFX deployed the new one (the API calls themselves
need a project; see README's list of what only a real project verifies)."""

from __future__ import annotations

from pipeline.components.vertex_pusher import Deployed, models_to_undeploy

NEW = "projects/my-proj/locations/europe-west4/models/555"


def _deployed(n: int) -> list[Deployed]:
    # The endpoint lists the project by number; upload returns it by id.
    return [Deployed(f"d{i}", f"projects/123/locations/europe-west4/models/{i}", f"2026-12-0{i}T00:00:00Z")
            for i in range(1, n + 1)] + [Deployed("dnew", "projects/123/locations/europe-west4/models/555",
                                                   "2026-12-09T00:00:00Z")]


def test_keeps_the_new_model_and_the_newest_previous_one():
    assert models_to_undeploy(_deployed(3), NEW, keep_previous=1) == ["d2", "d1"]


def test_keep_zero_undeploys_every_other_model():
    assert models_to_undeploy(_deployed(2), NEW, keep_previous=0) == ["d2", "d1"]


def test_nothing_to_undeploy_on_the_first_push():
    assert models_to_undeploy(_deployed(0), NEW, keep_previous=1) == []
    assert models_to_undeploy(_deployed(2), NEW, keep_previous=5) == []
