"""The design card's one-way dependencies: locator imports neither training nor ingest; they don't import each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"locator": {"training", "ingest"}, "training": {"ingest"}, "ingest": {"training"}}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        wrong = _imported_packages(path) & FORBIDDEN[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_help_loads_no_heavy_library():
    """`--help` must answer at once: building the CLIs' parsers imports neither torch, timm, sklearn nor Ray."""
    import subprocess
    import sys
    code = ("import sys, locator.cli, training.cli, ingest.cli\n"
            "for cli in (locator.cli, training.cli, ingest.cli): cli.build_parser().format_help()\n"
            "print(sorted(m for m in ('torch', 'timm', 'sklearn', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_ingest_stages_work_without_ray_or_pyarrow():
    """The lent GPU machine has neither (benchmarks/gpu_session.py calls the stages directly there)."""
    import subprocess
    import sys
    code = ("import sys\n"
            "sys.modules.update(ray=None, pyarrow=None)\n"  # any import of them now fails
            "import ingest.decode, ingest.embedder, ingest.writer, ingest.sources\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
