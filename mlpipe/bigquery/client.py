"""BigQuery clients for either target, and reads through the Storage Read API.

Locally the REST client points at the emulator and the Storage Read client at its gRPC port over an
insecure channel; reading rows over REST pages is an order of magnitude slower there (STACK.md).
"""

from __future__ import annotations

import functools
import logging

import pyarrow as pa
from google.api_core import exceptions as gexc

from mlpipe.bigquery.service import ensure_running
from mlpipe.config import Settings
from mlpipe.errors import NotFoundError, ServiceUnavailable, UsageError

log = logging.getLogger(__name__)


def bq_client(settings: Settings, check: bool = True):
    """A `google.cloud.bigquery.Client` for the configured target."""
    from google.cloud import bigquery

    if settings.bq_target == "cloud":
        return bigquery.Client(project=settings.project, location=settings.bq_location)
    if check:
        ensure_running(settings)
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=settings.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": settings.bq_endpoint},
        location=settings.bq_location,
    )


@functools.lru_cache(maxsize=4)
def _read_client_for(grpc_endpoint: str | None):
    from google.cloud import bigquery_storage_v1

    if grpc_endpoint is None:
        return bigquery_storage_v1.BigQueryReadClient()
    import grpc
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    # The emulator sends up to 100k rows as one message (~440 MB): lift gRPC's 4 MB limit.
    channel = grpc.insecure_channel(
        grpc_endpoint,
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    return bigquery_storage_v1.BigQueryReadClient(
        transport=BigQueryReadGrpcTransport(channel=channel)
    )


def read_client(settings: Settings):
    """A Storage Read API client (emulator gRPC port locally, Google's endpoint in the cloud)."""
    return _read_client_for(None if settings.bq_target == "cloud" else settings.bq_grpc_endpoint)


def query_arrow(settings: Settings, sql: str, client=None) -> pa.Table:
    """Run `sql` and fetch the result as Arrow through the Storage Read API."""
    client = client or bq_client(settings)
    try:
        job = client.query(sql)
        return job.result().to_arrow(bqstorage_client=read_client(settings))
    except gexc.NotFound as e:
        raise NotFoundError(_short(e)) from None
    except gexc.BadRequest as e:
        raise UsageError(f"BigQuery rejected the query: {_short(e)}") from None
    except gexc.ServiceUnavailable as e:
        raise ServiceUnavailable(f"BigQuery unavailable at {settings.bq_endpoint}: {_short(e)}") from None


def query_rows(settings: Settings, sql: str, client=None) -> list[dict]:
    """Small results (counts, histograms) as a list of dicts, over REST."""
    client = client or bq_client(settings)
    try:
        return [dict(row.items()) for row in client.query(sql).result()]
    except gexc.NotFound as e:
        raise NotFoundError(_short(e)) from None
    except gexc.BadRequest as e:
        raise UsageError(f"BigQuery rejected the query: {_short(e)}") from None


def table_exists(settings: Settings, table: str, client=None) -> bool:
    client = client or bq_client(settings)
    try:
        client.get_table(settings.table_id(table))
        return True
    except gexc.NotFound:
        return False


def _short(e: gexc.GoogleAPICallError) -> str:
    """The error's first line, without the "; reason: …, message: <the same text again>" that the
    client appends from the error details."""
    msg = getattr(e, "message", None) or str(e)
    line = msg.splitlines()[0] if msg else ""
    head, sep, _details = line.partition("; reason: ")
    return (head if sep and head else line) or type(e).__name__
