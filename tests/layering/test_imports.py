"""How the library hangs together: no import cycles, no flytekit, a small edge runtime."""

from pathlib import Path

from tests.layering.import_graph import cycles, import_graph

ROOT = Path(__file__).resolve().parents[2]


def test_the_library_has_no_import_cycles():
    found = cycles(import_graph(ROOT, "edge_deploy"))
    assert found == [], "import cycles (modules that import each other, directly or around a loop): " + "; ".join(
        " <-> ".join(cycle) for cycle in found
    )


def test_the_cycle_check_sees_cycles_through_function_level_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_the_library_never_imports_flytekit():
    graph_sources = [path for path in (ROOT / "edge_deploy").rglob("*.py")]
    offenders = [
        str(path.relative_to(ROOT))
        for path in graph_sources
        if "import flytekit" in path.read_text() or "from flytekit" in path.read_text()
    ]
    assert offenders == []
