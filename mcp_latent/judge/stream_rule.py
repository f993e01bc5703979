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


# Above 1 the labelled verdicts show p less sure than it should be, and the rule credits that, up to this scale and
# only as far as they show it beyond one standard error (`stream.stream_sharpness`). Capped at 1 until 6 Dec:
# BANKING77's p is underconfident (in the last third of the three runs of tools/results/stream_after its answers were
# right 97.9-99.3% at a 97.5% target, its recent labelled verdicts fitted 1.05-1.43), and the cap cost it 9-18
# points of the last third against a threshold chosen in hindsight. Not the plain best fit: on HWU64 the escalated
# verdicts sometimes fitted 1.0-1.2 while the answered top was overconfident (0.6-0.9), and an offline replay that
# took the best fit up to 1.5 answered HWU64's last third at 96.6%.
MAX_SHARPNESS = 1.5


# The sharpness is fitted on the most recent this many labelled verdicts at p >= 0.5 (operating_point.MIN_THRESHOLD:
# the only p a threshold can be at), not on the whole window: the early ones were given by the 5-per-label seed
# profile, whose p meant something else than the current fit's, and those below 0.5 are never answered.
STREAM_SHARPNESS_CHECKS = 500


# Between background refits the stream rule is run again once this many recorded verdicts have learnt their outcome
# (a teach): a threshold is otherwise set only when a refit ends, and a recalibration on a loaded machine takes tens
# of seconds, a thousand stream items. HWU64 (d78c215, run 3): the server answered at 0.988 from item 1,750 to 2,500
# while the same rule on the same evidence came down from 0.985 to 0.919 over that stretch.
STREAM_RESTATE_EVERY = 25
