"""A file cache of embeddings keyed by item id and encoder id, recomputed only for new or changed items.

Each (kind, encoder) pair is one `.npy` array (first axis = item) plus a `.json` index of item ids
and content hashes (photo checksum, or a hash of the model text). Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.runtime.progress import Progress

Compute = Callable[[list[str]], np.ndarray]


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingStore:
    def __init__(self, directory: str | Path, *, kind: str, encoder_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{kind}--{encoder_id}")
        self.directory = Path(directory)
        self.array_path = self.directory / f"{safe}.npy"
        self.index_path = self.directory / f"{safe}.json"
        self.kind = kind
        self.encoder_id = encoder_id

    def load(self) -> tuple[list[str], list[str], np.ndarray | None]:
        """Stored ids, their content hashes and the array (memory-mapped), or empty when absent."""
        if not (self.array_path.is_file() and self.index_path.is_file()):
            return [], [], None
        index = json.loads(self.index_path.read_text())
        array = np.load(self.array_path, mmap_mode="r")
        if len(index["ids"]) != len(array):  # torn by an old crash: start again
            return [], [], None
        return index["ids"], index["hashes"], array

    def missing(self, ids: Sequence[str], hashes: Sequence[str]) -> int:
        """How many of `ids` are absent or stale (reads only the index, not the array)."""
        stored_ids, stored_hashes, _ = self.load()
        stored = dict(zip(stored_ids, stored_hashes))
        return sum(stored.get(item) != digest for item, digest in zip(ids, hashes))

    def get(
        self,
        ids: Sequence[str],
        hashes: Sequence[str],
        compute: Compute,
        *,
        batch_size: int = 256,
        progress: Progress | None = None,
        checkpoint_seconds: float = 30.0,
    ) -> np.ndarray:
        """Vectors for `ids`, in that order; only missing or changed items go through `compute`.

        What is computed is written to the cache at least every `checkpoint_seconds` (and at the
        end), so a run that is killed resumes from there."""
        stored_ids, stored_hashes, stored = self.load()
        row_of = {item: row for row, item in enumerate(stored_ids)}
        wanted = dict(zip(ids, hashes))
        todo = [item for item, digest in wanted.items() if item not in row_of or stored_hashes[row_of[item]] != digest]
        pending_ids: list[str] = []
        pending: list[np.ndarray] = []
        last_write = time.monotonic()
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            pending.append(np.asarray(compute(chunk)))
            pending_ids += chunk
            if start + batch_size >= len(todo) or time.monotonic() - last_write >= checkpoint_seconds:
                self._merge(pending_ids, [wanted[item] for item in pending_ids], np.concatenate(pending))
                pending_ids, pending, last_write = [], [], time.monotonic()
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))
        if todo:
            stored_ids, stored_hashes, stored = self.load()
            row_of = {item: row for row, item in enumerate(stored_ids)}
        if stored is None:
            raise ValueError("no items asked for and nothing stored")
        return np.asarray(stored[[row_of[item] for item in ids]])

    def _merge(self, new_ids: list[str], new_hashes: list[str], vectors: np.ndarray) -> None:
        """Write the cache with these rows added or replaced."""
        stored_ids, stored_hashes, stored = self.load()
        row_of = {item: row for row, item in enumerate(stored_ids)}
        replaced = set(new_ids)
        # Items stored before and not recomputed stay: other catalogues may share the cache.
        keep = [item for item in stored_ids if item not in replaced]
        parts = ([np.asarray(stored[[row_of[item] for item in keep]])] if keep and stored is not None else []) + [vectors]
        self._write(keep + new_ids, [stored_hashes[row_of[item]] for item in keep] + new_hashes, np.concatenate(parts))

    def _write(self, ids: list[str], hashes: list[str], array: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        writer = f"{os.getpid()}-{threading.get_ident()}"  # two writers (processes or threads) never share a temporary
        array_temporary = self.directory / f".{self.array_path.stem}.{writer}.tmp.npy"
        index_temporary = self.directory / f".{self.index_path.stem}.{writer}.tmp.json"
        np.save(array_temporary, array)
        index_temporary.write_text(json.dumps({"kind": self.kind, "encoder_id": self.encoder_id, "ids": ids, "hashes": hashes}))
        # The index goes last: a crash in between leaves a length mismatch, which load() rejects.
        os.replace(array_temporary, self.array_path)
        os.replace(index_temporary, self.index_path)
