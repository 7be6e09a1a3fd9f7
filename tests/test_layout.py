"""The tree reads like the architecture, and the data path of a trial goes one way: read from the
source (imports anywhere in a module, lazy ones included), without importing anything."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "layerlth"


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path):
    """The layerlth modules `path` imports (a `from package import name` counts name when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("layerlth")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("layerlth"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES} for name, path in MODULES.items()}


def reaches(start):
    """Every layerlth module importing `start` loads, directly or through others (packages' __init__ too)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for target in GRAPH.get(name, ()):
            parents = {".".join(target.split(".")[:i]) for i in range(2, target.count(".") + 1)}
            for module in {target} | (parents & set(MODULES)):
                if module not in seen:
                    seen.add(module)
                    todo.append(module)
    return seen


def inside(prefix):
    return [name for name in MODULES if name == prefix or name.startswith(prefix + ".")]


def test_the_ground_imports_nothing_above_it():
    for name in inside("layerlth.foundations"):
        above = {m for m in reaches(name) if not m.startswith("layerlth.foundations")}
        assert not above, (name, above)


def test_the_engine_imports_no_ticket_procedure():
    for name in inside("layerlth.training"):
        tickets = {m for m in reaches(name) if m.startswith("layerlth.tickets")}
        assert not tickets, (name, tickets)


def test_the_search_and_the_analysis_never_import_the_trial_module():
    for name in inside("layerlth.search") + inside("layerlth.analysis"):
        assert "layerlth.tickets.trial" not in reaches(name), name


def test_the_tree_is_small_at_every_level():
    root = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(root) <= 12, root
    for folder in [PACKAGE, *[p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"]]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, (folder, len(modules))
    too_long = {str(p.relative_to(ROOT)): n for p in ROOT.glob("[lbt]*/**/*.py")
                if ".venv" not in p.parts and (n := len(p.read_text().splitlines())) > 400}
    assert not too_long, too_long


def package_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in PACKAGES) else None


PACKAGES = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def package_imports():
    """{package: the other layerlth packages its modules import}, lazy imports included."""
    found = {}
    for name, targets in GRAPH.items():
        here = package_of(name)
        if here is None:
            continue
        found.setdefault(here, set()).update(p for p in map(package_of, targets) if p not in (None, here))
    return found


def test_the_engine_the_measurements_the_criteria_and_the_tickets_never_import_each_other_both_ways():
    among = {"training", "measure", "criteria", "tickets"}
    imports = package_imports()
    both_ways = sorted((a, b) for a in among for b in among if a < b and b in imports.get(a, ()) and a in imports.get(b, ()))
    assert not both_ways, both_ways
