"""A local stand-in for Google Cloud Storage: ``gs://bucket/x`` is ``ROOT/bucket/x`` for
etils.epath (every run file) and for orbax's TensorStore (checkpoint arrays), keeping the
one GCS rule a writer can trip on: an object cannot be appended to.

    python tests/fake_gcs.py ROOT -m rlfb_jax.main --config ... --workdir gs://bucket/run
"""

from __future__ import annotations

import os
import runpy
import sys

from etils.epath import backend, gpath


class LocalBucket(backend._OsPathBackend):
    """epath's backend for gs:// paths, on the local directory `root`."""

    def __init__(self, root: str):
        self.root = root

    def _local(self, path) -> str:
        path = os.fspath(path)
        return os.path.join(self.root, path.removeprefix("gs://")) if "://" in path else path

    def _uri(self, local) -> str:
        return "gs://" + os.path.relpath(local, self.root)

    def open(self, path, mode):
        if "a" in mode:
            raise OSError(f"{path}: a GCS object cannot be appended to")
        return super().open(self._local(path), mode)

    def glob(self, path):
        return [self._uri(p) for p in super().glob(self._local(path))]

    def walk(self, top, **kwargs):
        for top_dir, dirs, files in super().walk(self._local(top), **kwargs):
            yield self._uri(top_dir), dirs, files


def _on_one_path(name):
    def method(self, path, *args, **kwargs):
        return getattr(super(LocalBucket, self), name)(self._local(path), *args, **kwargs)
    return method


def _on_two_paths(name):
    def method(self, path, dst, *args, **kwargs):
        return getattr(super(LocalBucket, self), name)(self._local(path), self._local(dst),
                                                       *args, **kwargs)
    return method


for _name in ("exists", "isdir", "listdir", "makedirs", "mkdir", "rmtree", "remove", "stat"):
    setattr(LocalBucket, _name, _on_one_path(_name))
for _name in ("rename", "replace", "copy"):
    setattr(LocalBucket, _name, _on_two_paths(_name))


def install(root: str, setattr=setattr) -> None:
    """Routes gs:// in this process to `root`: epath's backend, and orbax's TensorStore
    spec for GCS (a `file` driver there). Pass pytest's ``monkeypatch.setattr`` to undo it
    after a test."""
    from orbax.checkpoint._src.path import gcs_utils

    bucket = LocalBucket(root)
    setattr(gpath, "_PREFIX_TO_BACKEND", {**gpath._PREFIX_TO_BACKEND, "gs": bucket})
    setattr(gpath, "_GCS_BACKENDS", gpath._GCS_BACKENDS | {bucket})  # wins a copy to gs://
    setattr(gpath, "_is_tf_installed", lambda: False)  # else epath takes TensorFlow's gs://
    setattr(gcs_utils, "get_kvstore_for_gcs",
            lambda path: {"driver": "file", "path": bucket._local(path)})
    setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)


if __name__ == "__main__":
    root, flag, module, *args = sys.argv[1:]
    assert flag == "-m", "usage: fake_gcs.py ROOT -m MODULE ARGS..."
    install(root)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
