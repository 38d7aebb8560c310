"""docs/architecture.md stays true: every module is in its map, its layer list is the contract
that import-linter enforces, and no source file grows past 600 lines."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "transferkit"
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def test_every_module_is_in_the_module_map() -> None:
    missing = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        if not re.search(rf"(^|[\s/,]){re.escape(path.name)}([\s,]|$)", DOC, re.MULTILINE):
            missing.append(str(path.relative_to(PACKAGE)))
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
        if f"{folder.name}/" not in DOC:
            missing.append(folder.name + "/")
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_the_documented_layers_are_the_enforced_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    block = DOC.split("## Layers", 1)[1].split("```")[1]
    documented = [re.split(r"\s{2,}", line.strip())[0] for line in block.strip().splitlines()]
    assert documented == layers


def test_no_source_file_is_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long
