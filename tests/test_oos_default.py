"""Issue 24 item 7: the simulated out-of-scope recall a profile is fitted for by default is 0.75 (real out-of-scope
recall sits above the simulation on every set measured), in the file format and in `profiles build` alike; a
profile that states its own target keeps it."""

from mcp_latent.cli.main import build_parser
from mcp_latent.profiles.spec import ProfileSpec

LABELS = [{"name": "a", "examples": ["x"]}, {"name": "b", "examples": ["y"]}]


def test_default_target_out_of_scope_recall_is_075_everywhere():
    assert ProfileSpec(name="t", labels=LABELS).target_out_of_scope_recall == 0.75
    args = build_parser().parse_args(["profiles", "build", "--from", "rows.jsonl", "--name", "t"])
    assert args.target_oos_recall == 0.75


def test_a_stated_target_is_kept():
    assert ProfileSpec(name="t", target_out_of_scope_recall=0.8, labels=LABELS).target_out_of_scope_recall == 0.8
