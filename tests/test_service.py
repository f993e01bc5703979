"""The library API with a fake embedder: contracts, limits, teach, caching."""

import subprocess
import sys

import pytest
from conftest import FRUIT, ROOT, TOOLS, write_profile

from mcp_latent.errors import InvalidInput, NotAllowed, NotFound
from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings


def test_handoff_with_inline_verdicts_and_evaluate_by_handle(service):
    result = service.handoff("apple banana cherry fruit salad", from_agent="A", evaluate=["kind"])
    assert result["verdicts"]["kind"]["label"] == "fruit"
    again = service.evaluate(handle=result["handle"], profiles=["kind"])
    assert again["verdicts"] == result["verdicts"]


def test_evaluate_by_text_uses_embedding_cache(service, fake_embedder):
    service.evaluate(text="hammer wrench", profiles=["kind"])
    calls = fake_embedder.calls
    verdict = service.evaluate(text="hammer wrench", profiles=["kind"])["verdicts"]["kind"]
    assert fake_embedder.calls == calls and verdict["label"] == "tools"


def test_detail_adds_evidence(service):
    verdict = service.evaluate(text="apple banana", profiles=["kind"], detail=True)["verdicts"]["kind"]
    assert verdict["top"][0][0] == "fruit" and verdict["neighbours"][0][1] == "fruit"


def test_embed_returns_handles_and_vectors_on_request(service):
    plain = service.embed(["a b", "c d"])
    assert len(plain["handles"]) == 2 and "vectors" not in plain
    with_vectors = service.embed(["a b"], return_vectors=True)
    assert with_vectors["dim"] == 64 and len(with_vectors["vectors"][0]) == 64


def test_similar_excludes_the_query_handle(service):
    first = service.handoff("apple banana")["handle"]
    second = service.handoff("apple banana cherry")["handle"]
    service.handoff("hammer wrench")
    hits = service.similar(handle=first, k=2)["similar"]
    assert hits[0]["handle"] == second and first not in [h["handle"] for h in hits]


def test_compare_parent_reports_movement(service):
    parent = service.handoff("apple banana cherry fruit")["handle"]
    child = service.handoff("hammer wrench screwdriver", parent=parent)["handle"]
    result = service.evaluate(handle=child, profiles=["kind"], compare_parent=True)
    delta = result["parent"]["delta"]["kind"]
    assert result["parent"]["handle"] == parent and delta["was"] == "fruit" and delta["changed"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.handoff(""), "is empty"),
        (lambda s: s.handoff("x" * 20_001), "limit is 20,000"),
        (lambda s: s.handoff(123), "must be a string"),
        (lambda s: s.embed(["x"] * 257), "limit is 256"),
        (lambda s: s.embed([]), "non-empty list"),
        (lambda s: s.evaluate(text="x", profiles=["nope"]), "available: kind"),
        (lambda s: s.evaluate(handle="h_aaaaaaaaaa"), "not found"),
        (lambda s: s.evaluate(handle="zzz"), "malformed handle"),
        (lambda s: s.evaluate(), "exactly one of"),
        (lambda s: s.similar(text="x", k=0), "from 1 to 100"),
        (lambda s: s.handoff("x", meta={"k": "v" * 5000}), "limit is 4,096"),
        (lambda s: s.handoff("x", namespace="bad ns!"), "invalid namespace"),
        (lambda s: s.evaluate(text="x", profiles=["kind"] * 17), "at most 16"),
    ],
)
def test_bad_input_gets_a_clear_error(service, call, message):
    with pytest.raises((InvalidInput, NotFound), match=message):
        call(service)
    assert service.evaluate(text="apple", profiles=["kind"])["verdicts"]["kind"]["label"] == "fruit"


def test_teach_persists_and_changes_the_next_verdict(service, settings, fake_embedder):
    text = "durian rambutan mangosteen"
    service.teach("kind", "fruit", text=text)
    assert service.evaluate(text=text, profiles=["kind"], detail=True)["verdicts"]["kind"]["neighbours"][0][0] == text
    fresh = LatentService(settings, embedder=fake_embedder)
    fresh.start()
    assert fresh.list_profiles()[0]["taught"] == 1
    fresh.close()


def test_teach_counts_at_once_then_refits_in_the_background(service, settings):
    live = service.live["kind"]
    before = live.snapshot
    for text in ("durian rambutan", "lychee longan"):
        service.teach("kind", "fruit", text=text)
        now = live.snapshot
        assert now is not before and text in now.texts  # a new snapshot, swapped in before teach returned
        assert now.calibration is before.calibration or not now.provisional
    assert service.wait_refitted(60)
    refitted = live.snapshot
    assert live.refits >= 1 and {"durian rambutan", "lychee longan"} <= set(refitted.texts)
    assert service.evaluate(text="lychee longan", profiles=["kind"])["verdicts"]["kind"]["label"] == "fruit"


def test_teach_refuses_builtin_profiles_when_read_only(tmp_path, fake_embedder):
    shipped = LatentService(Settings(data_dir=tmp_path / "d", allow_teach_builtin=False), embedder=fake_embedder)
    shipped.start()
    with pytest.raises(NotAllowed, match="ALLOW_TEACH_BUILTIN=false"):
        shipped.teach("risk", "high", text="drop the prod database")
    shipped.close()
    allowed = LatentService(Settings(data_dir=tmp_path / "d"), embedder=fake_embedder)  # the default
    allowed.start()
    with pytest.raises(InvalidInput, match="labels: low, medium, high"):
        allowed.teach("risk", "extreme", text="x")
    assert allowed.teach("risk", "high", text="drop the prod database")["taught"]["risk"]["label"] == "high"
    allowed.close()


def test_fit_is_cached_on_disk(settings, fake_embedder, fruit_tools_profile):
    first = LatentService(settings, embedder=fake_embedder)
    first.start()
    first.close()
    calls = fake_embedder.calls
    second = LatentService(settings, embedder=fake_embedder)
    second.start()
    assert fake_embedder.calls == calls  # nothing re-embedded
    second.close()


def test_invalid_profile_is_reported_on_every_call_naming_it(settings, fake_embedder, fruit_tools_profile):
    """Every call naming the invalid profile says why it is missing (file and field); the others keep working
    (until issue 21 every call failed, naming only the first bad file)."""
    write_profile(settings.user_profiles_dir, "broken", {"only": ["one"]})
    svc = LatentService(settings, embedder=fake_embedder)
    svc.start()
    with pytest.raises(NotFound, match=r"broken.toml: labels"):
        svc.evaluate(text="x", profiles=["broken"])
    assert set(svc.evaluate(text="apple banana")["verdicts"]) == {"kind"}
    svc.close()


def test_data_dirs_sharing_a_profile_cache_embed_and_fit_each_profile_once(tmp_path, fake_embedder):
    write_profile(tmp_path / "profiles", "kind", {"fruit": FRUIT, "tools": TOOLS}, extra="min_similarity = -1.0")
    cache = tmp_path / "shared-cache"
    embeds_at_start, verdicts = [], []
    for data_dir in ("first", "second"):
        settings = Settings(
            data_dir=tmp_path / data_dir,
            profiles_dir=tmp_path / "profiles",
            profile_cache_dir=cache,
            builtin_profiles=False,
        )
        service = LatentService(settings, embedder=fake_embedder)
        before = fake_embedder.calls
        service.start()
        embeds_at_start.append(fake_embedder.calls - before)
        verdicts.append(service.evaluate(text="apple banana", profiles=["kind"])["verdicts"])
        service.close()
    # the first data dir embedded the exemplars (in background chunks), the second found them and the fit cached
    assert embeds_at_start[0] >= 1 and embeds_at_start[1] == 0
    assert verdicts[0] == verdicts[1] and verdicts[0]["kind"]["label"] == "fruit"
    assert len(list(cache.rglob("kind-*.fit.npz"))) == 1 and not list((tmp_path / "second").rglob("*.fit.npz"))


def test_get_returns_the_stored_text_and_provenance(service):
    handle = service.handoff("apple banana plan", from_agent="A", meta={"round": 1})["handle"]
    assert service.get(handle) == {
        "handle": handle,
        "text": "apple banana plan",
        "from_agent": "A",
        "meta": {"round": 1},
        "created_at": service.get(handle)["created_at"],
    }
    with pytest.raises(NotFound):
        service.get(handle, namespace="elsewhere")


def test_a_start_with_every_fit_cached_never_imports_the_fitting_libraries(tmp_path):
    """scipy and scikit-learn (~1 CPU-second) were imported at every start, beside the MCP SDK's import on the way
    to the first verdict, also when every fit came from the cache; a start that fits still imports them early."""
    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "tests")!r})
from conftest import FRUIT, TOOLS, HashingEmbedder, write_profile
from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings

profiles = Path({str(tmp_path / "profiles")!r})
if not profiles.exists():
    write_profile(profiles, "kind", {{"fruit": FRUIT, "tools": TOOLS}})
settings = Settings(data_dir=Path({str(tmp_path / "data")!r}), profiles_dir=profiles, builtin_profiles=False)
service = LatentService(settings, embedder=HashingEmbedder())
service.start()
verdict = service.evaluate(text="apple banana cherry fruit salad", profiles=["kind"])["verdicts"]["kind"]
service.close()
print(verdict["label"], "sklearn" in sys.modules, "scipy" in sys.modules)
"""

    def start() -> list[str]:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    assert start() == ["fruit", "True", "True"]  # the first start fits, with the libraries imported
    assert start() == ["fruit", "False", "False"]  # the second loads the cached fit
