"""The shape of the code: no import circles, and one module that changes a job's status.

Both checks read the source (no imports run), so they see imports inside functions and under
TYPE_CHECKING too: an import moved into a function to dodge a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "blogimg"
#: The one module allowed to write ``generated_images.status``.
QUEUE_MODULE = "blogimg.db.queue"  #: a package: its modules together are the one owner


def _in_queue(module: str) -> bool:
    return module == QUEUE_MODULE or module.startswith(QUEUE_MODULE + ".")


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = SOURCE) -> dict[str, ast.Module]:
    return {module_name(path, root): ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}


def imported(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports, anywhere in its source."""
    package = name if name in known and any(other.startswith(name + ".") for other in known) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` imports the module; ``from module import name`` the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = SOURCE) -> dict[str, set[str]]:
    trees = modules(root)
    known = set(trees)
    # A package's __init__ runs when any of its modules is imported, but it is not an edge of
    # theirs: only what the module's own source names counts.
    return {name: imported(name, tree, known) for name, tree in trees.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(graph.get(node, ())):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def status_writes(tree: ast.Module) -> list[int]:
    """Lines that write a job's status: ``x.status = …``, ``status=`` in ``update(GeneratedImage)…``
    or ``GeneratedImage(…)``, or raw SQL updating ``generated_images``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(element, ast.Attribute) and element.attr == "status":
                        lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            text = ast.unparse(node.func)
            writes_images = text == "GeneratedImage" or ("update(GeneratedImage)" in text and text.endswith(".values"))
            if writes_images and any(keyword.arg == "status" for keyword in node.keywords):
                lines.append(node.lineno)
            if text in {"setattr"} and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value == "status":
                lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "update generated_images" in " ".join(node.value.lower().split()):
            lines.append(node.lineno)
    return lines


def test_the_source_has_no_import_circles() -> None:
    graph = import_graph()
    assert "blogimg.db.queue" in graph and graph["blogimg.pipeline.worker"], "the graph was not read"
    assert cycles(graph) == []


def test_errors_is_a_leaf() -> None:
    assert import_graph()["blogimg.errors"] == set()


def test_the_cycle_finder_finds_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / "blogimg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("def create():\n    from blogimg.routes import router\n    return router\n")
    (package / "routes.py").write_text("from blogimg.app import create\nrouter = create\n")
    (package / "leaf.py").write_text("import os\n")
    assert cycles(import_graph(package)) == [["blogimg.app", "blogimg.routes"]]


def test_only_the_queue_writes_a_jobs_status() -> None:
    writers = {name: lines for name, tree in modules().items() if (lines := status_writes(tree))}
    queue_writers = {name for name in writers if _in_queue(name)}
    assert queue_writers, "the check found no status writes at all: it is not looking"
    assert {name: lines for name, lines in writers.items() if not _in_queue(name)} == {}


@pytest.mark.parametrize("source", [
    "image.status = Status.QUEUED",
    "image.status, image.error_code = Status.QUEUED, None",
    "update(GeneratedImage).where(GeneratedImage.id == 1).values(status='queued')",
    "session.add(GeneratedImage(prompt_id=1, status=Status.QUEUED))",
    "setattr(image, 'status', 'failed')",
    "text('UPDATE generated_images SET status = 1')",
])
def test_the_status_check_sees_every_way_of_writing(source: str) -> None:
    assert status_writes(ast.parse(source)) == [1]


def test_the_status_check_ignores_reads_and_other_tables() -> None:
    source = ("if image.status == Status.FAILED: pass\n"
              "Health(status='ok')\n"
              "update(Batch).values(image_ids=[])\n")
    assert status_writes(ast.parse(source)) == []
