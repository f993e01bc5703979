"""The evaluation harness: measures profiles on labelled data through the public library API only (the service,
`FittedProfile.judge`, `decision.decide`), so its figures are those of the code the server runs. The engine never
imports this package."""
