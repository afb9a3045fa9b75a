"""The README's first example must run and print what the README says it prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_first_example_runs_as_documented():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## A first example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    promised = [line[2:] for line in code.splitlines() if re.match(r"# \d{4}-", line)]  # output comments
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    assert promised and promised[0] == printed[0]
    assert len(printed) == 4  # the window, then three ranked options


def test_the_decision_record_table_is_the_dataclass():
    from airflow_provider_carbon.core.decision import Decision

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### The decision record", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", section, re.M))
    expected = {name: doc.replace("``", "`") for name, doc in Decision.field_docs().items()}
    assert rows == expected


def test_the_metrics_table_names_what_the_listener_sends():
    """The README's gauges are the keys of the figures the accounting listener sends (read from its source, so a
    gauge added or renamed there without the README fails here)."""
    import ast

    from airflow_provider_carbon.listeners import accounting

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("#### Metrics", 1)[1].split("\n#", 1)[0]
    documented = re.findall(r"^\| `([\w.]+)` \|", section, re.M)
    source = ast.parse(Path(accounting.__file__).read_text())
    (emit,) = (n for n in ast.walk(source) if isinstance(n, ast.FunctionDef) and n.name == "emit_metrics")
    (figures,) = (
        n.value
        for n in ast.walk(emit)
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "figures" for t in n.targets)
    )
    sent = [f"{accounting.METRIC_PREFIX}.{key.value}" for key in figures.keys]
    assert documented == sent
