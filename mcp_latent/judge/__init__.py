"""The verdict math: pure functions and immutable snapshots, no I/O but a fit's own file. Its only threads build
read-only search aids in the background and swap them in whole (`neighbour_search.SharedRows`, the int8 copy of
`exemplar_rows`); a verdict never waits for one.

- `fitted.py`: `FittedProfile`, a profile's fitted snapshot; `FittedProfile.verdict` judges; `exemplar_rows.py`:
  the append-only exemplar table its successive snapshots share; `neighbour_search.py`: exact nearest exemplars
  (one query's; one product for several profiles judged together); `quantized_rows.py`: an exact int8-bounded
  search for one query (off unless the `int8_neighbours` setting asks).
- `verdict.py`: `Verdict`, one profile's answer (compact and detailed forms), read-only once built.
- `ensemble.py`: linear head, kNN vote and their product; `words.py`: the n-gram naive Bayes expert.
- `decision.py`: the one decision rule (label, or abstain with a reason).
- `selection.py`: choosing C, the kNN and words weights, the temperature and the operating point by
  cross-validation (`fit_calibration`); `simulation.py`: its out-of-fold ensemble and hidden-label simulation;
  `grouping.py`: folds that hold a writer's or source's exemplars out together (chosen on unseen writers).
- `operating_point.py`: the offline choice of threshold and out-of-scope cutoff from held-out evidence.
- `stream.py`: the online threshold and sharpness learned from a deployment's own taught verdicts;
  `stream_rule.py`: its constants (numpy-free: the settings describe the rule with them); `stream_rank.py`: the
  ranking by p and the best label's exemplars that lowers the stream's threshold for the more reliable labels.
- `threshold.py`: the one place that decides which threshold a verdict is answered at, and why (fixed, fit,
  default, stream, spot checks); spot checks move it; `spot_checks.py`: what the taught verdicts say of the fit's
  point (below the target, read with the fit's promise as a prior) and the point that meets it.
- `memory.py`: answers from memory: (near) copies of exemplars, taught ones above all, take their label; how near
  (the radius, and the guard: how differently the profile's own model may read a copy) is fitted from the
  exemplars' close pairs and minimal pairs; `memory_evidence.py`: that evidence (close pairs, fold readings);
  `memory_numbers.py`: the amounts a text states, with units and scales (a copy states the same amounts, within a
  factor of 3; `clause_diff` reads the same amounts for its figure cue).
- `taught_diff.py`: a text that differs decisively from its nearest taught exemplar (a negation or a figure the
  profile reads as pushing away from its label) is not answered with that label; `clause_diff.py`: the reader.
- `pair_reader.py`: what differs between a taught text and a new one (the words either lacks, each read by the
  profile's words expert for how far it pushes from the taught label); `memory_wide.py`: a wider band below the
  memory's radius where another writer's restatement takes the taught label when the ensemble agrees and that
  push is under a bound fitted on written pairs.
- `support.py`: a profile defined over MCP abstains until its cross-validated evidence supports its target.
- `scope_gate.py`: the optional "in scope at all?" gate (`scope_gate` in a profile file), fitted on the profile's
  answer labels against its abstain labels; a text it stops is out of scope."""
