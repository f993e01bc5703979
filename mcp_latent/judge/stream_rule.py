"""The stream rule's constants, apart from its numpy code: the settings describe the rule with them, and a
server imports the settings long before it may import numpy (`tools/list` answers first)."""

# The stream's verdicts set the threshold once this many (of distinct in-scope texts) are recorded.
MIN_STREAM_VERDICTS = 200


# ...so that their expected answered accuracy is this many standard errors above the target: p is calibrated on
# exemplars, and on a stream it may be off by a little (HWU64 through the server, one error: 96.9% measured for a
# 97% target), so the measured rate, not just its expectation, is to hold the target. One, not two: with two the
# stream asked for about 98.5% where the target was 97.5% (d78c215, 3 runs per set: the stream's own threshold sat
# at 0.98-0.99 for windows of 500-1,750 items, BANKING77's last third answered at 98.0-99.0% escalating 39-41%, where
# a threshold chosen in hindsight held 97% at 17.5-24.8%); replayed on those runs' verdicts, one standard error
# answered BANKING77's last third at 97.1-99.2% and HWU64's at 97.0-97.7% (docs/learning.md "Calibrated on the
# stream"). Spot checks below the target still raise the threshold (`threshold.online_threshold`).
STREAM_MARGIN_ERRORS = 1.0


# ...and only while p can be trusted on the stream's labelled verdicts (`stream_sharpness`): texts taught after a
# verdict (mostly escalations; spot checks too), each verdict's p against whether its best label was the one taught.
# At least this many.
MIN_STREAM_CHECKS = 50


# Below this sharpness p is too far off to go by: no stream threshold (the fit's own stays).
MIN_SHARPNESS = 0.5


# Above 1 the labelled verdicts show p less sure than it should be, and the rule credits that, up to this scale.
# Capped at 1 until 6 Dec: BANKING77's p is underconfident (its stream's taught verdicts at p >= 0.5 fitted 1.05-1.6;
# the answered ones, right 97.6-99.3% in the last third of every run, where the target was 97.5%), and the cap cost
# it 10-15 points of the last third against a threshold chosen in hindsight. 1.5 and 2 chose the same thresholds on
# the six recorded runs of tools/results/stream_after (docs/learning.md "Calibrated on the stream").
MAX_SHARPNESS = 1.5


# The sharpness is fitted on the most recent this many labelled verdicts at p >= MIN_THRESHOLD (the only p a
# threshold can be at), not the whole window: the early ones were given by the 5-per-label seed profile, whose p
# meant something else, and those at p < 0.5 are never answered whatever the threshold. HWU64 seed 0 (recorded
# verdicts replayed): the recent ones said 0.81-0.86, where the p of that stretch's answers was in fact 0.8-0.82.
STREAM_SHARPNESS_CHECKS = 500


# Between background refits the stream rule is run again once this many recorded verdicts have learnt their outcome
# (a teach): a threshold is otherwise set only when a refit ends, and a recalibration on a loaded machine takes tens
# of seconds, a thousand stream items. HWU64 (d78c215, run 3): the server answered at 0.988 from item 1,750 to 2,500
# while the same rule on the same evidence came down from 0.985 to 0.919 over that stretch.
STREAM_RESTATE_EVERY = 25
