"""The package's layout rules that a reader relies on, checked on the source (no imports run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tlbench

PACKAGE = Path(tlbench.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    """Top-level names of every module a file imports, at any depth (function-level imports too)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_ray_is_imported_only_under_on_ray():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "ray" in _imported_roots(p) and p.parent.name != "on_ray"]  # fmt: skip
    assert not offenders, f"Ray imported outside tlbench/on_ray/: {offenders}"


def test_the_grid_model_and_the_registries_never_import_torch_or_ray():
    """They are the driver's: grid files are validated on machines (and in processes) without either."""
    names = ("registry.py", "freezing.py", "trial_config.py", "values.py", "archs.py", "datasets.py", "sources.py",
             "cli.py", "cost.py", "makespan.py", "shares.py", "progress.py", "run_status.py", "trial_claims.py")  # fmt: skip
    driver = [*(PACKAGE / "grid").glob("*.py"), *(PACKAGE / name for name in names)]
    offenders = {str(p.relative_to(PACKAGE)): sorted(_imported_roots(p) & {"torch", "ray"}) for p in driver}
    # cli.py imports torch only inside `grid plan`'s measurement and the worker-side preflight; cost.py inside
    # its matmul timing; datasets.py reaches torchvision only inside a loader, to download.
    allowed = {"cli.py": ["torch"], "cost.py": ["torch"]}
    assert {k: v for k, v in offenders.items() if v and allowed.get(k) != v} == {}


def test_the_readmes_code_map_names_every_module_and_only_modules_that_exist():
    readme = (PACKAGE.parent / "README.md").read_text()
    start = readme.index("## Code map")
    section = readme[start : readme.index("\n## ", start + 1)]
    named = set(re.findall(r"`(tlbench/[\w/]+(?:\.py)?/?)`", section))
    missing_files = sorted(p for p in named if not (PACKAGE.parent / p).exists())
    assert not missing_files, f"the README's code map names what the tree lacks: {missing_files}"
    modules = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    unmapped = sorted(modules - named)
    assert not unmapped, f"modules the README's code map does not name: {unmapped}"
