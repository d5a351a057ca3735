"""SFT pairs (prompt, completion) from JSON lines, the files ``data.source=jsonl`` reads.

A line is either a pair, ``{"prompt": ..., "completion": ...}``, or a task record as the data
CLI (``python -m rlfb_jax.data.synthetic``) and `rlfb_jax.data.save_jsonl` write it, whose
completion is its ``reference`` (``prompt + reference`` is the program). The two kinds may
be mixed; other fields are ignored. Host only.
"""

from __future__ import annotations

import os

from rlfb_jax.data.jsonl import iter_jsonl


def read_pairs(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(prompts, completions) of a pairs or tasks JSONL file.

    Raises FileNotFoundError naming the path, or ValueError naming file and line (a line that
    is not JSON, or has no string ``prompt`` and ``completion`` / ``reference``).
    """
    prompts, completions = [], []
    for lineno, row in iter_jsonl(path):
        key = "completion" if "completion" in row or "reference" not in row else "reference"
        for field in ("prompt", key):
            if not isinstance(row.get(field), str):
                raise ValueError(f"{os.fspath(path)}:{lineno}: missing or non-string field "
                                 f"{field!r} (a line is a {{prompt, completion}} pair or a "
                                 "task with prompt and reference)")
        prompts.append(row["prompt"])
        completions.append(row[key])
    if not prompts:
        raise ValueError(f"{os.fspath(path)}: no examples")
    return prompts, completions
