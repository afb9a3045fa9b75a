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
