"""The evaluation harness (`profiles eval`, `tools/`): measures a profile on labelled data with the engine's own
code, so its figures are those of the code the server runs: the profile is fitted by the service
(`service.api`, `LatentService.fitted_profile`) and judged by `judge.fitted` (`FittedProfile.judge`, the call
every verdict makes). Its anchors reach further in, by public names only (never a `_private` one): the linear
head alone and 1-NN from `judge.ensemble` and the server's rule from `judge.decision`; test rows are read by
`profiles.builder` and embedded once through the cache of `profiles.fitter`; `settings` says where; `plotting`
draws. tests/test_quality.py holds this list to the imports. The engine never imports this package."""
