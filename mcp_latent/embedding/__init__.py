"""Text -> unit-length float32 vectors.

- `base.py`: the `Embedder` protocol and the per-text cache every backend sits behind.
- `model_source.py`: which model to load and its stable id (the one place a model id is computed).
- `onnx_backend.py`: the serving path (onnxruntime + tokenizers, no torch).
- `torch_backend.py`: the sentence-transformers path (export, fallback, other models).
- `onnx_export.py`: the one-time export of a sentence-transformers model to ONNX, in a child process.
- `factory.py`: choosing and loading a backend from the settings."""
