"""Evaluator profiles: files, registry, builder, fitting and its caches, reports.

- `spec.py`: the TOML file format (pydantic), reading and writing it.
- `registry.py`: the profiles of a server (shipped + user dir) and their taught exemplars.
- `builder.py`: building a profile file from labelled JSONL/CSV.
- `fitter.py`: embedding and fitting profiles, with the disk caches that make a restart cheap.
- `report.py`: a fitted profile's operating points as text, a PNG curve and a record in the file."""
