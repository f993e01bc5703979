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


# Between background refits the stream rule is run again once this many recorded verdicts have learnt their outcome
# (a teach): a threshold is otherwise set only when a refit ends, and a recalibration on a loaded machine takes tens
# of seconds, a thousand stream items. HWU64 (d78c215, run 3): the server answered at 0.988 from item 1,750 to 2,500
# while the same rule on the same evidence came down from 0.985 to 0.919 over that stretch.
STREAM_RESTATE_EVERY = 25
