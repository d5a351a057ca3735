"""JSON-lines reading with errors that name the file and line (host only; stdlib only
but for cloud paths).

Every JSONL reader of the project (tasks, MBPP, samples for evaluation, SFT pairs,
metrics) goes through `iter_jsonl`, so a bad line always reads ``FILE:LINE: why``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from typing import Any


class JSONLError(ValueError):
    """A JSON-lines file has a line that is not a JSON object; the message is FILE:LINE: why."""


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (1-based line number, object) for each non-blank line of a (.gz) JSONL file.

    Raises FileNotFoundError naming the path, or JSONLError naming file and line.
    """
    path = os.fspath(path)
    with _open_binary(path) as raw, (gzip.open(raw, "rt", encoding="utf-8") if path.endswith(
            ".gz") else io.TextIOWrapper(raw, encoding="utf-8")) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise JSONLError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise JSONLError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row


def _open_binary(path: str):
    """The file opened for reading bytes; a URI (``gs://bucket/...``, a cloud run's metrics)
    through etils.epath, imported only then."""
    if "://" in path:
        from etils import epath

        if not epath.Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return epath.Path(path).open("rb")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    return open(path, "rb")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All objects of a JSONL file (see `iter_jsonl`)."""
    return [row for _, row in iter_jsonl(path)]
