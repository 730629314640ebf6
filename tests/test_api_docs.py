"""scripts/make_api_docs.py renders a module page from the docstrings."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_api_page_lists_the_public_names():
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_api_docs.py"
    spec = importlib.util.spec_from_file_location("make_api_docs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = mod.module_page("egain.methods")
    assert page.startswith("# `egain.methods`")
    assert "## `create(" in page and "checkpoint" in page
