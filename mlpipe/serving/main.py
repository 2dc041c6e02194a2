"""Cloud Functions entry point (HTTP): `functions-framework --source mlpipe/serving/main.py
--target predict_http`. Configuration comes from `load_settings()` (MLPIPE_* environment variables).

The framework loads this file by path, not as `mlpipe.serving.main`, so it holds no state of its
own: everything lives in `mlpipe.serving.app`.
"""

from __future__ import annotations

import logging

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from mlpipe.serving.app import get_app, json_error

if not logging.getLogger().handlers:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# Errors the framework raises before or after our function (its robots.txt/favicon.ico 404, a client
# that disconnects mid-body) get the same JSON shape; `errorhandler` exists while the framework
# loads this module.
_errorhandler = getattr(functions_framework, "errorhandler", None)
if _errorhandler is not None:
    _errorhandler(HTTPException)(json_error)
    _errorhandler(Exception)(json_error)


@functions_framework.http
def predict_http(request: flask.Request) -> flask.Response:
    return get_app().handle(request)
