"""The README's promises: its tour runs, and its two commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_tour_runs_on_memory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUS_URL", "memory://readme-tour")
    (tour,) = re.findall(r"```python\n(.*?)```", README, re.S)
    exec(compile(tour, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "1 0"  # murmur2(b"customer-7") places it on partition 1 of 3
    consumed = sorted(line.split(" ", 2)[2] for line in printed[-2:])
    assert consumed == ["{'id': 1}", "{'id': 2}"]
    assert "1 0 {'id': 1}" in printed


def test_the_readme_opens_with_make_demo_and_make_test() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
