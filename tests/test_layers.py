"""The layers hold: every module imports on its own, whatever was imported before it; no
modules import each other in a circle; no module outgrows one reading.

The layer order itself is checked by import-linter (contracts in pyproject.toml, run by
.ci/run), which leaves out imports under `if TYPE_CHECKING:` and does not look inside a layer;
the cycle check here counts every import statement between any two modules, so a circle inside
a layer, or one hidden in annotations, is seen too.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentkit

pytestmark = pytest.mark.subprocess

OPTIONAL = {"agentkit.runtimes.llama_cpp"}
PACKAGE = Path(agentkit.__file__).parent
MAX_LINES = 500


# Run in one interpreter that imports what agentkit imports from outside (never agentkit), then
# forks a child per module: each child starts with no module of agentkit imported, and none pays
# again for pydantic, httpx or the rest.
FORKING = """
import ast, importlib, os, pathlib, sys
package = pathlib.Path(sys.argv[1])
outside = set()
for path in package.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            outside.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            outside.add(node.module)
for name in sorted(outside):
    if name.split(".")[0] != "agentkit":
        try:
            importlib.import_module(name)
        except Exception:
            pass
assert not [name for name in sys.modules if name.split(".")[0] == "agentkit"]


def child(name, report=None):
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as error:
            print(name, type(error).__name__, error, flush=True)
            os._exit(1)
        if report is not None:
            loaded = [m for m in sys.modules if m.split(".")[0] == "agentkit"]
            os.write(report, " ".join(loaded).encode())
        os._exit(0)
    return pid


def ended(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


# Importing `agentkit.x` first runs the package's `__init__` first, to its end, and only then
# looks for `x`: for a module that `__init__` imports on its way, that is `import agentkit`
# step for step. One child imports the package and says what it loaded; each other module gets
# a child of its own.
read, write = os.pipe()
first = child("agentkit", write)
os.close(write)
with os.fdopen(read) as pipe:
    loaded = set(pipe.read().split())
if not ended(first):
    sys.exit(1)
children = [child(name) for name in sys.argv[2:] if name not in loaded]
sys.exit(not all([ended(pid) for pid in children]))
"""


def test_every_subpackage_imports_first_in_a_fresh_interpreter() -> None:
    names = sorted(info.name for info in pkgutil.iter_modules(agentkit.__path__, "agentkit."))
    assert "agentkit.chat_formats" in names and "agentkit.wire" in names
    run = subprocess.run(
        [sys.executable, "-c", FORKING, str(PACKAGE), *names],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run.returncode, run.stdout) == (0, ""), run.stderr[-2000:]


def test_the_local_runtime_imports_first_when_its_extra_is_installed() -> None:
    pytest.importorskip("llama_cpp", reason="needs the local extra")
    for name in sorted(OPTIONAL):
        run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
        assert run.returncode == 0, run.stderr.decode()[-2000:]


# -- import cycles ------------------------------------------------------------------------------


def _module_files(package: Path) -> dict[str, Path]:
    """Every module under `package` by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _top_level(tree: ast.Module) -> Iterator[ast.AST]:
    """The statements that run when the module is imported: inside `if` and `try` blocks
    (`if TYPE_CHECKING:` included), not inside functions or classes."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            pending += ast.iter_child_nodes(node)


def _source(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of the module a `from ... import` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


class ImportGraph:
    """Which modules of a package each of its modules imports, by its import statements.

    Every `import` and `from ... import` statement counts, wherever it is: at the top, under
    `if TYPE_CHECKING:`, inside a function; relative ones are made absolute. `from a.x import y`
    is an import of the module `a.x.y` if there is one, else of `a.x`.

    Packages: an `__init__` imports its modules to re-export their names, and importing a
    module runs the `__init__` of its package first. Neither makes a cycle: a module is not
    counted as importing its package, and a name imported from a package counts as an import
    of the module the package got it from, followed through every `__init__` that passes it
    on (`from agentkit import ScriptedRuntime` is an import of `agentkit.runtimes.scripted`).
    A package is in a cycle only through what its `__init__` defines itself, or an import of
    the whole package (`import agentkit.x`): then the package needs the module and the module
    needs the package, a real circle.
    """

    def __init__(self, package: Path) -> None:
        self.files = _module_files(package)
        self.packages = {name for name, path in self.files.items() if path.stem == "__init__"}
        self.trees = {
            name: ast.parse(path.read_text(), str(path)) for name, path in self.files.items()
        }
        # For each package, the names its __init__ imports: name -> (source module, its name).
        self.passed_on: dict[str, dict[str, tuple[str, str]]] = {}
        for package_name in self.packages:
            names = self.passed_on[package_name] = {}
            for node in _top_level(self.trees[package_name]):
                if isinstance(node, ast.ImportFrom):
                    source = _source(package_name, True, node)
                    for alias in node.names:
                        names[alias.asname or alias.name] = (source, alias.name)
        self.edges = {name: self._imports(name) for name in self.files}

    def home(self, module: str, name: str) -> str | None:
        """The module `name` comes from when imported from `module` (None: not one of ours)."""
        seen = set()
        while True:
            if f"{module}.{name}" in self.files:
                return f"{module}.{name}"
            if module not in self.files:
                return None
            if module not in self.packages or (module, name) in seen:
                return module
            seen.add((module, name))
            source = self.passed_on[module].get(name)
            if source is None or source[0] not in self.files:
                return module  # defined by the __init__ itself (or brought from elsewhere)
            module, name = source

    def _imports(self, module: str) -> set[str]:
        found = set()
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    # The deepest of our modules the dotted name reaches.
                    reached = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
                    found.add(next((r for r in reached if r in self.files), ""))
            elif isinstance(node, ast.ImportFrom):
                source = _source(module, module in self.packages, node)
                for alias in node.names:
                    target = source if alias.name == "*" else self.home(source, alias.name)
                    found.add(target or "")
        return found - {"", module}

    def _reachable(self, start: str) -> set[str]:
        seen: set[str] = set()
        pending = [start]
        while pending:
            for step in self.edges[pending.pop()] - seen:
                seen.add(step)
                pending.append(step)
        return seen

    def cycles(self) -> list[list[str]]:
        """Every cycle (no module twice), from its first module in sorted order, sorted."""
        reaches = {name: self._reachable(name) for name in self.edges}
        found: list[list[str]] = []
        for start in sorted(self.edges):
            # Only modules after `start` that lead back to it: each cycle is found once, and
            # the walk stays inside the modules that are on cycles with `start`.
            stack = [iter(sorted(self.edges[start]))]
            path = [start]
            while stack:
                step = next(stack[-1], None)
                if step is None:
                    stack.pop()
                    path.pop()
                elif step == start:
                    found.append([*path, start])
                elif step > start and step not in path and start in reaches[step]:
                    stack.append(iter(sorted(self.edges[step])))
                    path.append(step)
        return sorted(found)


def test_the_cycle_check_counts_every_import_and_follows_re_exports(tmp_path: Path) -> None:
    files = {
        "__init__.py": "from pkg.a import A\nfrom pkg.sub import helper\n\nVERSION = 1\n",
        "a.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b.py": "def later():\n    from .a import A\n",
        "sub/__init__.py": "from .tools import helper\n",
        "sub/tools.py": "import json\nimport pkg.c\nfrom pkg import A\n",
        "c.py": "from pkg import VERSION\nfrom pkg.sub import helper\n",
    }
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    graph = ImportGraph(tmp_path / "pkg")
    assert graph.edges == {
        "pkg": {"pkg.a", "pkg.sub.tools"},
        "pkg.a": {"pkg.b"},  # under TYPE_CHECKING
        "pkg.b": {"pkg.a"},  # inside a function, relative
        "pkg.c": {"pkg", "pkg.sub.tools"},  # VERSION is the package's own; helper is not
        "pkg.sub": {"pkg.sub.tools"},
        "pkg.sub.tools": {"pkg.a", "pkg.c"},  # A through the package, to where it is defined
    }
    assert [" -> ".join(cycle) for cycle in graph.cycles()] == [
        "pkg -> pkg.sub.tools -> pkg.c -> pkg",
        "pkg.a -> pkg.b -> pkg.a",
        "pkg.c -> pkg.sub.tools -> pkg.c",
    ]


def test_no_modules_import_each_other_in_a_circle() -> None:
    chains = [" -> ".join(cycle) for cycle in ImportGraph(PACKAGE).cycles()]
    assert not chains, "import cycles (a -> b: a imports b):\n" + "\n".join(chains)


# -- module size --------------------------------------------------------------------------------


def test_no_module_is_longer_than_one_reading() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"
