"""The README stays true: its configuration table is the one generated from the settings."""

from conftest import ROOT

from mcp_latent.settings import markdown_table


def test_readme_configuration_table_matches_settings():
    assert markdown_table() in (ROOT / "README.md").read_text(encoding="utf-8")
