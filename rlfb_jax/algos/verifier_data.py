"""Data for the learned verifier (LEVER, Ni et al. 2023): sample, execute, label, render.

    samples = collect(policy, params, tasks, sampling, n, key, pool)   # [task] TaskSamples
    text = render_execution(program.exec_lines, program.status)       # "# exec: ok 10 | ..."
    batch = verifier_batch(tokenizer, tasks, programs, ...)            # sequence batch + labels

For each task, n programs are sampled (row order kept, with their log-likelihoods under the
model at T=1) and deduplicated keeping counts; each distinct program runs twice: against
the hidden tests (its label, never shown to a selector) and through `Task.probe_job` on the
prompt's visible examples (its execution result: one value, or error, per example call).

The verifier's input is ``prompt + program + rendering of the execution result``
(truncated to fixed token budgets, so every batch has one shape):

    [prompt, left-padded to P][program + eos, <= C][execution rendering, <= E][pad]

The score is read at the last real token; the optional LM term covers the program tokens.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from etils import epath

from rlfb_jax.core.batching import make_sequence_batch
from rlfb_jax.core.rollout import rollout
from rlfb_jax.data.tasks import UNKNOWN_OUTPUT
from rlfb_jax.data.tokenizer import encode_batch, eos_id, pad_id
from rlfb_jax.eval.rerank import execution_key

NO_EXAMPLES = "(no visible examples)"


@dataclasses.dataclass
class Program:
    """One distinct program of a task and what running it gave."""

    completion: str
    count: int = 1  # how many samples were this program
    passed: bool = False  # hidden tests (the label)
    status: str = ""  # hidden-test status
    probe_status: str = ""  # status of the visible-example probe
    exec_lines: tuple[str, ...] = ()  # per visible example: "ok V", "wrong V", "out V", "error E"
    key: str = ""  # grouping key (`rlfb_jax.eval.rerank.execution_key`)


@dataclasses.dataclass
class TaskSamples:
    """The n samples of one task: per-sample arrays in sampling order + distinct programs."""

    task_index: int
    logprob: list[float]  # [n] log p_LM(completion | prompt), T = 1
    length: list[int]  # [n] completion tokens (stop token included)
    index: list[int]  # [n] position of each sample's program in `programs`
    programs: list[Program]

    @property
    def completions(self) -> list[str]:
        return [self.programs[i].completion for i in self.index]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for p in d["programs"]:
            p["exec_lines"] = list(p["exec_lines"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSamples:
        progs = [Program(**{**p, "exec_lines": tuple(p["exec_lines"])}) for p in d["programs"]]
        return cls(d["task_index"], list(d["logprob"]), list(d["length"]), list(d["index"]),
                   progs)


def dedupe(completions: Sequence[str]) -> tuple[list[Program], list[int]]:
    """Distinct programs in order of first appearance (with counts) and each sample's index."""
    where: dict[str, int] = {}
    programs: list[Program] = []
    index = []
    for c in completions:
        if c in where:
            programs[where[c]].count += 1
        else:
            where[c] = len(programs)
            programs.append(Program(c))
        index.append(where[c])
    return programs, index


def probe_lines(outcome, expected_stdout: str) -> tuple[str, ...]:
    """Per visible example, "ok V" (the expected value V came back), "wrong V" (V came back
    instead), "out V" (V came back from an example shown without its output) or "error E"
    (the call raised E), from a probe job's outcome; () when the program did not get to run
    the examples."""
    if outcome.status not in ("passed", "wrong_answer"):
        return ()
    expected = expected_stdout.strip().splitlines()
    got = outcome.stdout.strip().splitlines()
    out = []
    for i, exp in enumerate(expected):
        g = got[i].strip() if i < len(got) else "!NoOutput"
        if g.startswith("!"):
            out.append("error " + g[1:])
        elif exp.strip() == UNKNOWN_OUTPUT:
            out.append("out " + g)
        elif g == exp.strip():
            out.append("ok " + g)
        else:
            out.append("wrong " + g)
    return tuple(out)


def render_execution(exec_lines: Sequence[str], probe_status: str, max_chars: int = 96,
                     max_value_chars: int = 32) -> str:
    """The compact execution summary appended to the verifier's input, e.g.
    ``"\\n# exec: ok 10 | wrong [2, 4]\\n"`` or ``"\\n# exec: syntax_error\\n"``.
    Each value is cut to `max_value_chars`, the whole summary to `max_chars`."""
    if exec_lines:
        parts = [x if len(x) <= max_value_chars else x[: max_value_chars - 3] + "..."
                 for x in exec_lines]
        body = " | ".join(parts)
    else:
        body = probe_status or "not run"
    return ("\n# exec: " + body)[:max_chars] + "\n"


def _probe(task, completion: str, timeout_per_test: float | None):
    """The visible-example probe job of a program, or None when the prompt has no example
    of the form ``assert CALL == EXPECTED``."""
    try:
        return task.probe_job(completion, timeout_per_test=timeout_per_test)
    except ValueError:
        return None


def program_jobs(timeout_per_test: float | None = None):
    """The rollout's jobs for one task: each distinct program of its samples against the
    hidden tests, then on the visible examples (when there are any)."""

    def jobs(task, texts: list[str]) -> list:
        out = []
        for p in dedupe(texts)[0]:
            probe = _probe(task, p.completion, timeout_per_test)
            out += [task.to_job(p.completion)] + ([probe] if probe is not None else [])
        return out

    return jobs


def label(task, programs: list[Program], outcomes: list, timeout_per_test: float | None):
    """Fills each program's label and execution result from the outcomes of its
    `program_jobs`, in their order."""
    it = iter(outcomes)
    for p in programs:
        h = next(it)
        p.passed, p.status = bool(h.passed), h.status
        probe = _probe(task, p.completion, timeout_per_test)
        if probe is None:
            p.probe_status, p.key = "no_examples", NO_EXAMPLES
            continue
        o = next(it)
        p.probe_status = o.status
        p.exec_lines = probe_lines(o, probe.tests[0][1])
        p.key = execution_key(o.status, o.stdout, o.error_type)


def collect(policy, params, tasks: Sequence[Any], sampling, n: int, key, pool,
            batch_size: int = 256, probe_timeout: float | None = None,
            desc: str = "sample") -> list[TaskSamples]:
    """Samples n programs per task (`rlfb_jax.core.rollout.rollout`, execution overlapped
    with sampling), dedupes them and executes each distinct one (hidden tests + visible-
    example probe). Returns one `TaskSamples` per task, in task order."""
    eps = rollout(policy, params, tasks, sampling, n, key, pool, chunk_rows=batch_size,
                  jobs=program_jobs(probe_timeout), desc=desc)
    seq_logp = (eps.logprobs * eps.mask).sum(axis=1)  # [B] log p_LM at T = 1
    lengths = eps.mask.sum(axis=1)
    out = []
    for i, task in enumerate(tasks):
        rows = slice(i * n, (i + 1) * n)
        programs, index = dedupe(eps.texts[rows])
        label(task, programs, eps.task_outcomes[i], probe_timeout)
        out.append(TaskSamples(i, [float(x) for x in seq_logp[rows]],
                               [int(x) for x in lengths[rows]], index, programs))
    return out


def save_samples(path: str, samples: Sequence[TaskSamples]):
    """JSON lines, written to a temporary file and renamed (a killed run leaves no half file)."""
    tmp = epath.Path(path + ".tmp")
    tmp.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in samples))
    tmp.replace(path)


def load_samples(path: str) -> list[TaskSamples]:
    lines = epath.Path(path).read_text().splitlines()
    return [TaskSamples.from_dict(json.loads(line)) for line in lines if line.strip()]


def class_weights(labels: np.ndarray, counts: np.ndarray | None = None,
                  balance: bool = True) -> np.ndarray:
    """[N] float32 weights of mean 1: each class carries half the total weight when
    `balance` (a class that is absent leaves the other's weights at 1), times the duplicate
    counts when given (renormalized)."""
    labels = np.asarray(labels, bool)
    w = np.ones(len(labels), np.float64) if counts is None else np.asarray(counts, np.float64)
    if balance and labels.any() and (~labels).any():
        w = np.where(labels, 0.5 * w / w[labels].sum(), 0.5 * w / w[~labels].sum())
    return (w * len(w) / max(w.sum(), 1e-12)).astype(np.float32)


def verifier_batch(tokenizer, prompts: Sequence[str], completions: Sequence[str],
                   renderings: Sequence[str] | None, prompt_len: int, completion_len: int,
                   exec_len: int, labels=None, weights=None) -> dict[str, np.ndarray]:
    """The verifier's inputs as a sequence batch of fixed shape.

    Row b is prompt b (left-padded/cut to P = prompt_len), then completion b + eos (cut to
    C = completion_len), then rendering b (cut to E = exec_len tokens; E = 0 when
    `renderings` is None), then padding. Returns tokens [B, P+C+E] int32, attention_mask
    [B, L] bool, loss_mask [B, L] bool (the program's tokens), labels [B] float32 and
    weights [B] float32 (ones unless given).
    """
    eos = eos_id(tokenizer)
    p_ids = encode_batch(tokenizer, prompts)
    c_ids = [c[:completion_len] for c in encode_batch(tokenizer, completions)]
    c_ids = [c + [eos] if len(c) < completion_len else c for c in c_ids]
    if renderings is None:  # the no-execution verifier: no rendering, no room for one
        exec_len = 0
    if exec_len == 0:
        r_ids = [[] for _ in completions]
    else:
        r_ids = [r[:exec_len] for r in encode_batch(tokenizer, renderings)]
    batch = make_sequence_batch(p_ids, [c + r for c, r in zip(c_ids, r_ids)], prompt_len,
                                completion_len + exec_len, pad_id(tokenizer))
    batch.pop("truncated")
    loss_mask = np.zeros_like(batch["loss_mask"])
    for b, c in enumerate(c_ids):
        loss_mask[b, prompt_len : prompt_len + len(c)] = True
    batch["loss_mask"] = loss_mask
    b = len(prompts)
    batch["labels"] = (np.zeros(b, np.float32) if labels is None
                       else np.asarray(labels, np.float32))
    batch["weights"] = (np.ones(b, np.float32) if weights is None
                        else np.asarray(weights, np.float32))
    return batch


def flatten(samples: Sequence[TaskSamples], tasks: Sequence[Any]):
    """Distinct programs of all tasks as rows: (prompts, completions, renderings, labels [N],
    counts [N], task row [N] (position in `samples`))."""
    prompts, comps, renders, labels, counts, rows = [], [], [], [], [], []
    for r, s in enumerate(samples):
        task = tasks[s.task_index]
        for p in s.programs:
            prompts.append(task.prompt)
            comps.append(p.completion)
            renders.append(render_execution(p.exec_lines, p.probe_status))
            labels.append(p.passed)
            counts.append(p.count)
            rows.append(r)
    return (prompts, comps, renders, np.array(labels, bool), np.array(counts, np.int64),
            np.array(rows, np.int64))
