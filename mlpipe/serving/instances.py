"""Prediction request bodies → a float32 [n, 784] batch of raw 0–255 pixels, or BadInstanceError.

Accepted instances (AI Platform / TF Serving row format, `{"instances": [...]}`):
- `{"image": PIXELS}` or a bare `PIXELS`, where PIXELS is 784 numbers, 28×28 or 28×28×1;
- `{"image_bytes": {"b64": "<base64 PNG>"}}`: a 28×28 PNG, decoded here with Pillow. Grey ("L")
  is expected; other PNG modes are converted to grey (ITU-R 601-2 luma, alpha ignored).
Normalization stays in the model, so values must be raw pixels in [0, 255]; booleans, strings, null,
NaN and ±Infinity are rejected, never coerced.

The common request — every instance 784 flat numbers — takes a fast road: orjson decodes the body
and one numpy conversion checks and converts all instances at once. Whenever anything is unusual
(a body orjson refuses or might read differently from `json`, any instance not in that form, any bad
value) the request goes the standard way, instance by instance, which names what is wrong; so the
fast road changes speed only, never an answer or an error message.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

import numpy as np

from mlpipe.contract import IMAGE_PIXELS as PIXELS
from mlpipe.contract import IMAGE_SIDE as SIDE
from mlpipe.errors import BadInstanceError

try:  # installed with Beam; the standard decoder alone gives the same answers, slower
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

SHAPES = ((PIXELS,), (SIDE, SIDE), (SIDE, SIDE, 1))
# orjson reads integers beyond 64 bits as floats where `json` keeps ints: leave any long digit run
# to `json`. And it nests up to 1,024 deep where `json` may stop earlier (Python's recursion limit):
# leave bodies that could nest deeply (many brackets) to `json` too.
_DIGITS_AS_ZEROS = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))  # digit → b"0", else b" "
_LONG_DIGIT_RUN = b"0" * 19
_FAST_MAX_BRACKETS = 512
PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA"}
# Instances per request. AI Platform bounds a request by its 1.5 MB body (gcloud sends ≤ 100
# instances per call) and Vertex lets each deployed model set its own instance limit; ours keeps the
# work of one request bounded whatever the encoding: 1.5 MB of tiny PNGs is ~11,800 instances.
# 1,000 instances are at most 784,000 decoded pixels (each PNG's header must say 28x28 before a pixel
# is decoded) and ~3 MB of float32 input.
MAX_INSTANCES = 1000
# A 28x28 digit needs no text chunks: refuse big ones before Pillow inflates them (its defaults allow
# 1 MB per chunk and 64 MB per image).
PNG_MAX_TEXT_BYTES = 4096


def parse_body(body: bytes) -> np.ndarray:
    """The request body's instances as a float32 array of shape [n, 784]."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise BadInstanceError('request body must be a JSON object like {"instances": [...]}')
    if "instances" not in doc:
        raise BadInstanceError('request body has no "instances" list')
    unknown = sorted(set(doc) - {"instances", "signature_name"})
    if unknown:
        raise BadInstanceError(f"unknown request field(s) {unknown[:5]}; send only \"instances\"")
    sig = doc.get("signature_name", "serving_default")
    if sig != "serving_default":
        raise BadInstanceError(f"unknown signature_name {str(sig)[:60]!r}; only serving_default is served")
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise BadInstanceError('"instances" must be a list')
    if not instances:
        raise BadInstanceError('"instances" is empty')
    if len(instances) > MAX_INSTANCES:
        raise BadInstanceError(
            f"{len(instances)} instances in one request; send at most {MAX_INSTANCES} per request"
        )
    batch = _flat_batch(instances, may_hold_booleans=b"true" in body or b"false" in body)
    if batch is not None:
        return batch
    return np.stack([parse_instance(inst, i) for i, inst in enumerate(instances)])


def _flat_batch(instances: list, may_hold_booleans: bool = True) -> np.ndarray | None:
    """All instances at once when each is `{"image": [784 numbers]}` or `[784 numbers]` with every
    value an int or float in 0..255 — exactly the float32 rows `parse_instance` gives them; None
    for anything else, which `parse_instance` then accepts or rejects with its message.

    numpy's own type inference is the type check: a string, null or nested list gives a non-numeric
    (or mis-shaped) array. Booleans alone it would silently take for ints, so a body that may hold a
    JSON `true`/`false` is left to the standard road."""
    if may_hold_booleans:
        return None
    rows = []
    for inst in instances:
        if type(inst) is dict:
            if len(inst) != 1 or "image" not in inst:
                return None
            inst = inst["image"]
        if type(inst) is not list or len(inst) != PIXELS:
            return None
        rows.append(inst)
    try:
        arr = np.array(rows)
    except (ValueError, OverflowError, TypeError):
        return None
    if arr.shape != (len(rows), PIXELS) or arr.dtype.kind not in "iuf":
        return None
    flat = arr.astype(np.float64, copy=False)
    if not np.isfinite(flat).all() or flat.min() < 0 or flat.max() > 255:
        return None
    return flat.astype(np.float32)


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadInstanceError("request body is empty; send JSON")
    if (orjson is not None and body.count(b"[") + body.count(b"{") <= _FAST_MAX_BRACKETS
            and _LONG_DIGIT_RUN not in body.translate(_DIGITS_AS_ZEROS)):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard decoder explains what is wrong, in the words clients already get
    return parse_json_standard(body)


def parse_json_standard(body: bytes) -> Any:
    """`json.loads` with NaN/Infinity refused and decoding errors as BadInstanceError."""
    if not body:
        raise BadInstanceError("request body is empty; send JSON")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except BadInstanceError:
        raise
    except RecursionError:
        raise BadInstanceError("request body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise BadInstanceError(f"request body is not valid JSON: {str(e)[:120]}") from None


def _reject_constant(name: str) -> None:
    raise BadInstanceError(f"{name} is not a pixel value")


def parse_instance(instance: Any, index: int) -> np.ndarray:
    """One instance → float32 [784]."""
    where = f"instances[{index}]"
    if isinstance(instance, dict):
        keys = set(instance)
        if keys == {"image"}:
            return _pixels(instance["image"], f"{where}.image")
        if keys == {"image_bytes"}:
            return _png(instance["image_bytes"], f"{where}.image_bytes")
        raise BadInstanceError(
            f'{where} must have exactly one key, "image" or "image_bytes"; has {sorted(keys)[:5]}'
        )
    if isinstance(instance, list):
        return _pixels(instance, where)
    raise BadInstanceError(f'{where} must be an object {{"image": [...]}} or a list of pixels')


def _pixels(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise BadInstanceError(f"{where} must be a list of 784 pixels (or 28x28, 28x28x1)")
    if len(value) == PIXELS and not isinstance(value[0], list):
        items: Any = value  # the common flat form: check element types on the list itself (fast)
    else:
        try:
            # dtype=object keeps ragged lists and non-numbers as they are, so they can be rejected
            # below instead of being coerced ("5" → 5.0, true → 1) by a numeric conversion.
            arr = np.array(value, dtype=object)
        except (ValueError, RecursionError):
            raise BadInstanceError(f"{where} is not a regular array of pixels (ragged or too deep)") from None
        if arr.shape not in SHAPES:
            ragged = any(isinstance(x, list) for x in arr.flat)
            got = "a ragged array" if ragged else f"shape {list(arr.shape)}"
            raise BadInstanceError(f"{where} must hold 784 pixels as [784], [28, 28] or [28, 28, 1]; got {got}")
        items = arr.reshape(PIXELS).tolist()
    kinds = set(map(type, items))
    if not kinds <= {int, float}:
        bad = sorted(k.__name__ for k in kinds - {int, float})
        raise BadInstanceError(f"{where} has non-numeric pixel values ({', '.join(bad)})")
    try:
        flat = np.array(items, dtype=np.float64)
    except OverflowError:
        raise BadInstanceError(f"{where} has a pixel value outside 0..255") from None
    if not np.isfinite(flat).all():
        raise BadInstanceError(f"{where} has a NaN or infinite pixel value")
    if flat.min() < 0 or flat.max() > 255:
        raise BadInstanceError(
            f"{where} has pixel values in [{flat.min():g}, {flat.max():g}]; raw pixels must be in 0..255"
        )
    return flat.astype(np.float32)


def _png(value: Any, where: str) -> np.ndarray:
    from PIL import Image, PngImagePlugin, UnidentifiedImageError

    PngImagePlugin.MAX_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_MEMORY = PNG_MAX_TEXT_BYTES

    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise BadInstanceError(f'{where} must be {{"b64": "<base64-encoded PNG>"}}')
    try:
        data = base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise BadInstanceError(f"{where}.b64 is not valid base64") from None
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            # Check size and mode before decoding pixels: a bomb is rejected without being inflated.
            if img.size != (SIDE, SIDE):
                raise BadInstanceError(f"{where} is a {img.size[0]}x{img.size[1]} PNG; expected 28x28")
            if img.mode not in PNG_MODES:
                raise BadInstanceError(f"{where} has PNG mode {img.mode}; use 8-bit grey (L)")
            grey = img.convert("L") if img.mode != "L" else img
            pixels = np.asarray(grey, dtype=np.float32)
    except BadInstanceError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise BadInstanceError(f"{where} is not a readable PNG image") from None
    return pixels.reshape(PIXELS)
