"""The layering the code relies on (STYLE.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_domain_imports_no_faust_kafka_or_aiohttp():
    code = ("import sys, app.domain.attribution, app.domain.clicks, app.domain.tokens, "
            "app.domain.model, app.domain.lift; bad = [m for m in "
            "('faust', 'aiokafka', 'aiohttp', 'mode') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tables_and_agents_are_this_projects_packages():
    import agents
    import tables

    assert Path(agents.__file__).resolve().is_relative_to(ROOT)
    assert Path(tables.__file__).resolve().is_relative_to(ROOT)


def test_no_pipeline_imports_another():
    import ast

    for module in (ROOT / "agents").glob("*.py"):
        imported = {node.module for node in ast.walk(ast.parse(module.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(ast.parse(module.read_text()))
                     if isinstance(node, ast.Import) for alias in node.names}
        assert not {name for name in imported if name == "agents"
                    or name.startswith("agents.")}, module.name
