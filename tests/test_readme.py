"""The README's first example must run and print what the README says it prints."""

from __future__ import annotations

import contextlib
import io
import re

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
