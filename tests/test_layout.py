"""The layout's rules hold: each package of densehead imports only what its `__init__` docstring
allows ("May import: ..."), no module imports itself back through others (imports inside
functions included), the library never imports the dashboard's or the tests' libraries, and the
pages use the product, not its tools."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from paths import ROOT

PACKAGE = ROOT / "densehead"
# third-party packages that only the dashboard (and tools, cli) may import
DASHBOARD_ONLY = {"streamlit", "streamlit_webrtc", "plotly", "_plotly_utils", "aiortc"}
TEST_ONLY = {"playwright", "pytest"}
BENCH_ONLY = {"onnx", "onnxruntime"}   # the bench extra: densehead benchmark-peers only
LIBRARY = ("core", "weights", "engine", "render", "io", "batch")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines under `if TYPE_CHECKING:`: imports for type hints only, never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules `path` imports at run time, anywhere in it (densehead's resolved to the
    module, a name imported from a package resolved to its submodule; others by top name)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    own = module_name(path) if path.is_relative_to(PACKAGE) else ""
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                name = f"{target}.{alias.name}"
                found.add(name if name in modules else target)
    return found


def layer(module: str) -> str:
    """The package of a densehead module ("" for densehead itself and its __main__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else ""


def allowed_imports() -> dict[str, set[str]]:
    rules: dict[str, set[str]] = {}
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        match = re.search(r"^May import: (.*)$", doc, re.MULTILINE)
        assert match, f"{init.relative_to(ROOT)} does not say what it may import"
        rule = match.group(1).rstrip(".")
        rules[init.parent.name] = (set() if rule == "nothing of densehead"
                                   else {p.strip() for p in rule.split(",")})
    return rules


ALLOWED = allowed_imports()


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: {m for m in imports_of(path, set(modules)) if m in modules}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing
    itself (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_says_what_it_may_import_and_keeps_to_it():
    assert set(ALLOWED) == {"core", "weights", "engine", "render", "io", "batch", "dashboard",
                            "tools", "cli"}
    broken = []
    for module, targets in import_graph().items():
        here = layer(module)
        if not here:
            continue   # densehead/__init__ (the public API) and __main__ may use any package
        for target in targets:
            there = layer(target)
            if there != here and there not in ALLOWED[here]:
                broken.append(f"{module} imports {target or 'densehead'}")
    assert not broken, broken


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    """The check above can fail: a loop through three modules and a self-import are found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]


def test_the_library_never_imports_the_dashboards_the_tests_or_the_benchmarks_libraries():
    modules = all_modules()
    wrong = []
    for name, path in modules.items():
        if layer(name) in LIBRARY or not layer(name):
            tops = {m.split(".")[0] for m in imports_of(path, set(modules))}
            wrong += [f"{name} imports {t}"
                      for t in tops & (DASHBOARD_ONLY | TEST_ONLY | BENCH_ONLY)]
    assert not wrong, wrong


@pytest.mark.parametrize("page", [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))],
                         ids=lambda p: p.name)
def test_pages_use_the_product_not_its_tools(page):
    used = {layer(m) for m in imports_of(page, set(all_modules())) if m.startswith("densehead")}
    assert not used & {"tools", "cli"}, used
