"""The package's layout rules, folder by folder, checked on the source (no imports run; tests/test_imports.py
checks in a fresh interpreter that the driver's folders load neither torch nor Ray). What each folder holds is
said once, in its __init__.py; the README's code map names the folders."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tlbench

PACKAGE = Path(tlbench.__file__).parent
REPO = PACKAGE.parent
ROLES = ("grid", "registries", "plan", "results", "report", "on_ray", "trial", "bench")
DRIVER = ("grid", "registries", "plan", "results", "report")  # run where a grid is read: no torch, no Ray at import
# Top-level modules: leaves every role shares; tiny.py, whose dotted path grid files name (`tlbench.tiny:small_cnn`);
# console.py, the `tlbench` console script over the roles' commands.
TOP_LEVEL = {"__init__.py", "values.py", "process_exit.py", "tiny.py", "console.py"}


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Dotted names of every module a file imports (function-level imports too, unless top_level_only)."""
    tree = ast.parse(path.read_text(), str(path))
    # Imports for annotations only (`if TYPE_CHECKING:`) are no dependency at run time, and no cycle.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}  # fmt: skip
    nodes = [n for n in (tree.body if top_level_only else ast.walk(tree)) if id(n) not in typing_only]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import (the house imports absolutely: tlbench.<role>.<module>)"
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_every_module_lives_in_a_role_folder_or_is_a_shared_leaf():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL)
    assert not loose, f"modules at the package's top, outside a role folder: {loose}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(ROLES), f"role folders changed: {folders}; say what the new one holds in this test and the README"
    for leaf in TOP_LEVEL - {"__init__.py", "tiny.py", "console.py"}:
        imported = {n for n in _imports(PACKAGE / leaf) if n.startswith("tlbench")}
        assert not imported, f"tlbench/{leaf} is a shared leaf and imports {sorted(imported)}"


def test_ray_is_imported_only_under_on_ray():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if any(n == "ray" or n.startswith("ray.") for n in _imports(p)) and p.parent.name != "on_ray"]  # fmt: skip
    assert not offenders, f"Ray imported outside tlbench/on_ray/: {offenders}"


def test_the_driver_folders_import_torch_only_inside_functions():
    """A grid is read, listed, planned and reported on machines without torch: at most a function that measures
    (plan/cost.py's matmul rate), loads (a registry's downloader) or preflights a run imports it."""
    offenders = {}
    for folder in DRIVER:
        for path in _modules(folder):
            heavy = sorted(n for n in _imports(path, top_level_only=True) if n.split(".")[0] in ("torch", "torchvision", "ray"))
            if heavy:
                offenders[str(path.relative_to(PACKAGE))] = heavy
    assert not offenders, f"driver modules importing torch or Ray at module level: {offenders}"


def test_the_driver_folders_never_import_a_trial_or_ray_module_at_module_level():
    """The driver reads trials' results, never their code: a module-level import of tlbench.trial or tlbench.on_ray
    from grid/, registries/, plan/, results/ or report/ would pull torch or Ray into `grid list` and the report."""
    offenders = {}
    for folder in DRIVER:
        for path in _modules(folder):
            bad = sorted(
                n for n in _imports(path, top_level_only=True) if n.startswith(("tlbench.trial.", "tlbench.on_ray.", "tlbench.bench."))
            )
            if bad and not (folder == "registries" and all(n.startswith(("tlbench.trial.config", "tlbench.trial.pools")) for n in bad)):
                offenders[str(path.relative_to(PACKAGE))] = bad
    # registries/datasets.py builds pools (trial/pools.py) from typed configs (trial/config.py): both torch-free.
    assert not offenders, f"driver modules importing worker code at module level: {offenders}"


def test_a_trial_never_imports_the_driver_the_report_or_ray():
    offenders = {}
    for path in _modules("trial"):
        bad = sorted(n for n in _imports(path) if n.startswith(("tlbench.grid.cli", "tlbench.report", "tlbench.on_ray", "tlbench.bench")))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders, f"trial modules importing the driver's commands, the report, Ray or the bench: {offenders}"


def test_there_is_no_import_cycle_between_modules():
    """Counting function-level imports too: a cycle hidden inside a function is still a cycle to a reader."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = set()
        for name in _imports(path):
            for candidate in (name, name.rsplit(".", 1)[0]):
                if candidate != module and (REPO / Path(*candidate.split("."))).with_suffix(".py").is_file():
                    graph[module].add(candidate)
                    break
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles]}"


def test_every_folder_says_what_each_of_its_modules_holds():
    """A folder's __init__.py docstring is its map: it names every module in it, and only modules that exist."""
    for folder in ROLES:
        init = PACKAGE / folder / "__init__.py"
        assert init.is_file(), f"tlbench/{folder}/ has no __init__.py to say what it holds"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        named = set(re.findall(r"(?<![\w/])(\w+\.py)\b", doc))
        present = {p.name for p in (PACKAGE / folder).glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
        assert present <= named, f"tlbench/{folder}/__init__.py does not name {sorted(present - named)}"
        assert named <= present | {"__main__.py"}, f"tlbench/{folder}/__init__.py names modules it lacks: {sorted(named - present)}"


def test_the_readmes_code_map_names_every_folder_and_only_what_exists():
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Code map")
    section = readme[start : readme.index("\n## ", start + 1)]
    named = set(re.findall(r"`(tlbench/[\w/.]*)`", section))
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"the README's code map names what the tree lacks: {missing}"
    folders = {f"tlbench/{role}/" for role in ROLES}
    assert folders <= named, f"folders the README's code map does not name: {sorted(folders - named)}"


def test_tests_mirror_the_package():
    """A test module lives in the folder of the role it tests (tests/fidelity/: the reports' grid), or at the top
    when it tests the whole (end to end, layout, imports, how commands exit)."""
    tests = REPO / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__" and any(p.glob("test_*.py"))}
    assert folders <= {*ROLES, "fidelity"}, f"test folders that mirror no role: {sorted(folders - {*ROLES, 'fidelity'})}"
    names = [p.name for p in tests.rglob("test_*.py")]
    twins = sorted({n for n in names if names.count(n) > 1})
    assert not twins, f"test modules sharing a name across folders (pytest imports them by basename): {twins}"
