"""Small things seen on the way (issue 11): descriptions, error text, where pictures go."""

from __future__ import annotations

from google.api_core import exceptions as gexc

from mlpipe.bigquery.client import _short
from mlpipe.lineage.cli import image_path
from mlpipe.registry import PushMetadata, VersionInfo
from mlpipe.serving.resources import version_resource
from pipeline.queries import split_queries
from tests.conftest import make_settings


def test_description_says_trained_on_train_and_valid_evaluated_on_test():
    queries = split_queries("p", "mnist")
    meta = PushMetadata(source_tables=tuple(q.table for q in queries),
                        source_queries={q.split: q.sql for q in queries})
    info = VersionInfo("mnist", "v1", "2026-01-01T00:00:00Z", "/x", meta, {})
    description = version_resource("p", info)["description"]
    assert "trained on p.mnist.train, p.mnist.valid; evaluated on p.mnist.test" in description


def test_query_error_text_is_not_repeated():
    # What google-cloud-bigquery makes of the emulator's (and BigQuery's) error response.
    e = gexc.BadRequest('Syntax error: Unexpected identifier "SELEC" at [1:1]; reason: invalidQuery, '
                        'location: query, message: Syntax error: Unexpected identifier "SELEC" at [1:1]')
    assert _short(e) == 'Syntax error: Unexpected identifier "SELEC" at [1:1]'
    assert _short(gexc.NotFound("Not found: Table p:d.t")) == "Not found: Table p:d.t"


def test_lineage_pictures_go_to_the_state_dir(tmp_path):
    settings = make_settings(tmp_path / "state")
    path = image_path(settings, "v2", "png")
    assert path == tmp_path / "state" / "lineage" / "lineage-v2.png"
