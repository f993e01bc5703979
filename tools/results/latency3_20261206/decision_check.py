"""Runs tests/test_verdict_cost.py's decision-identity tests against a service on the user's profile cache (the
pytest session refits the shipped profiles into a fresh cache: 4-5 minutes on this loaded machine)."""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, "tests")
import pytest
import test_verdict_cost as tv

from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings


def unwrap(f):
    return getattr(f, "__wrapped__", None) or f._get_wrapped_function()


t0 = time.time()
service = LatentService(Settings(data_dir=Path(tempfile.mkdtemp(prefix="l3-check-"))))
service.start()
service.wait_ready(900)
sets = unwrap(tv.judged_sets)(service)
print("sets", len(sets[0]), "texts", round(time.time() - t0), "s", flush=True)
base = unwrap(tv.float32_verdicts)(sets)
print("float32 verdicts", len(base), round(time.time() - t0), "s", flush=True)
with pytest.MonkeyPatch.context() as mp:
    tv.test_the_int8_bound_gives_the_same_decisions(sets, base, mp)
print("int8: decision-identical", round(time.time() - t0), "s", flush=True)
tv.test_one_product_over_several_profiles_gives_the_same_decisions(sets, base)
print("shared: decision-identical", round(time.time() - t0), "s", flush=True)
tv.test_the_int8_bound_keeps_exactly_the_nearest_rows(sets)
print("int8 keeps the nearest rows", round(time.time() - t0), "s", flush=True)
service.close()
