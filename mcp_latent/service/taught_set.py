"""What one profile has been taught: the (label, text) pairs in the order they arrived, each text's latest label
and the store id of its last teach seen, and a running hash of the pairs (part of the fit cache key).

Not thread-safe on purpose: its one owner, `LiveProfile`, touches it only under its `_lock`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


class TaughtSet:
    def __init__(self, file_labels: dict[str, str], taught: Iterable[tuple[str, str]] = ()):
        self._file_labels = dict(file_labels)  # each of the profile file's texts and its label
        self.reset(taught)

    def reset(self, taught: Iterable[tuple[str, str]] = ()) -> None:
        """Start again from the file's labels and these pairs (an operator reverted the others)."""
        self.pairs: list[tuple[str, str]] = []
        # The label each text was given last (the file's, then taught; of conflicting teaches the latest wins, in
        # the store's order) and the store id of the last teach this server saw of it.
        self._latest = dict(self._file_labels)
        self._latest_id: dict[str, int] = {}
        self._digest = hashlib.sha256()
        for label, text in taught:
            self.add(label, text)

    def add(self, label: str, text: str, store_id: int | None = None) -> None:
        self.pairs.append((label, text))
        self._latest[text] = label
        if store_id is not None:
            self._latest_id[text] = max(store_id, self._latest_id.get(text, 0))
        self._digest.update(f"{label}\0{text}\n".encode())

    def has(self, label: str, text: str) -> bool:
        """Whether `label` is already this text's latest label (the file's or taught): teaching it changes nothing."""
        return self._latest.get(text) == label

    def is_news(self, label: str, text: str, store_id: int | None) -> bool:
        """Whether a stored teach of a label this profile has changes what it holds: not when the text already has
        that label, nor when it is older than the last teach of the text seen (its own)."""
        if self.has(label, text):
            return False
        return store_id is None or store_id > self._latest_id.get(text, 0)

    def fingerprint(self) -> str:
        """The hash of every pair in order ("" while nothing is taught: the file's own fit)."""
        return self._digest.hexdigest() if self.pairs else ""

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)
