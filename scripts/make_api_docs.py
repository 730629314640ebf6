"""Write the API reference (docs/api/*.md) from the docstrings of egain's public modules.

    python scripts/make_api_docs.py            # writes docs/api/<module>.md and docs/api/README.md

One page per module: its docstring, then every name in ``__all__`` (or every public name defined
there) with its signature and docstring. ``egain.editing`` is included when it exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["egain.methods", "egain.generators", "egain.metrics", "egain.editing"]


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _public(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", "").startswith(module.__name__)
        ]
    return sorted(names)


def module_page(name: str) -> str:
    module = importlib.import_module(name)
    lines = [f"# `{name}`", "", inspect.getdoc(module) or "", ""]
    for attr in _public(module):
        obj = getattr(module, attr, None)
        if obj is None:
            continue
        if inspect.isclass(obj):
            lines += [f"## class `{attr}{_signature(obj)}`", "", inspect.getdoc(obj) or "", ""]
            for meth, fn in inspect.getmembers(obj, inspect.isfunction):
                if meth.startswith("_") or fn.__qualname__.split(".")[0] != obj.__name__:
                    continue
                doc = inspect.getdoc(fn) or ""
                lines += [f"### `{attr}.{meth}{_signature(fn)}`", "", doc, ""]
        elif callable(obj):
            lines += [f"## `{attr}{_signature(obj)}`", "", inspect.getdoc(obj) or "", ""]
        else:
            lines += [f"## `{attr}`", "", f"`{type(obj).__name__}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    out = ROOT / "docs" / "api"
    out.mkdir(parents=True, exist_ok=True)
    index = ["# API reference", "", "Generated from the docstrings by `python scripts/make_api_docs.py`.", ""]
    for name in MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        (out / f"{name}.md").write_text(module_page(name))
        index.append(f"* [`{name}`]({name}.md)")
    (out / "README.md").write_text("\n".join(index) + "\n")
    print(f"wrote {len(index) - 4} page(s) into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
