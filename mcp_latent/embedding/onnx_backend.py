"""The fast embedding path: an exported ONNX graph run by onnxruntime, tokenized by the `tokenizers` package.

Imports neither torch nor transformers, so a serving process stays small and starts in well under a second.
Same tokenizer file, truncation (the model's max_seq_length), mean pooling and normalisation as the
sentence-transformers model it was exported from (see onnx_export.py, which also checks the vectors).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# The files of one exported model's cache directory (written by onnx_export, read here).
MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"


class OnnxEmbedder:
    """One onnxruntime session; runs are serialized (they would only fight over the same cores)."""

    def __init__(self, directory: Path, threads: int = 2, batch_size: int = 16, resident_weights: bool = False):
        """`batch_size`: texts per session run (Settings.onnx_batch_size says why it is small); `resident_weights`:
        read the mapped weights in at once (Settings.onnx_resident_weights, `resident.py` says why)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        manifest = json.loads((Path(directory) / MANIFEST_FILE).read_text())
        self.directory = Path(directory)
        self.model_id: str = manifest["model_id"]
        self.dim: int = int(manifest["dim"])
        self.batch_size = batch_size
        self.backend = "onnxruntime-int8" if manifest.get("int8") else "onnxruntime"
        # The tokenizer.json of this model pads every text to 128 and truncates at 128; sentence-transformers
        # overrides both at call time (pad to the longest in the batch, truncate at max_seq_length): do the same.
        self._tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(max_length=int(manifest["max_seq_length"]))
        pad_id = self._tokenizer.token_to_id("[PAD]")
        self._tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: on a shared machine a spinning thread burns a core that
        # the event loop, the tokenizer and other processes need. In one run on 2 shared cores (load ~15), with
        # spinning 64 short texts took 27% longer and one text 1.7x longer.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        self._session = ort.InferenceSession(
            str(self.directory / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self._session.get_inputs()]
        if resident_weights:
            from mcp_latent.embedding.resident import make_resident

            make_resident(self.directory)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """One tiny run, so the first real text does not pay for the session's first allocations."""
        self._run(["warm up"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length waste little compute on padding (sentence-transformers sorts the same way).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._run([texts[i] for i in rows])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        with self._lock:
            return self._session.run(None, {name: feed[name] for name in self._inputs})[0]
