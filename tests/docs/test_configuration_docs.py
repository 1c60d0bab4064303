"""The README's configuration table and .env.example say what the code reads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import bff.config

ROOT = Path(__file__).resolve().parents[2]


def _variables_in_code() -> set[str]:
    source = Path(bff.config.__file__).read_text()
    return set(re.findall(r'"(BFF_[A-Z_]+)"', source)) - {"BFF_"}


def test_every_variable_the_code_reads_is_in_the_readme_table() -> None:
    table = set(re.findall(r"^\| `(BFF_[A-Z_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert _variables_in_code() == table


def test_every_variable_the_code_reads_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?(BFF_[A-Z_]+)=", example, re.M))
    assert _variables_in_code() - {"BFF_CONFIG"} <= listed
    assert "BFF_CONFIG" in example


def test_every_contract_variable_is_read_by_the_code() -> None:
    contract = ROOT.parent / "shared" / "design" / "interface.md"
    if not contract.exists():  # the contract lives beside the repo, not in it
        if os.environ.get("CI") == "true":
            pytest.fail(f"the contract is missing at {contract}")
        pytest.skip("the shared contract is not checked out beside the repo")
    named = set(re.findall(r"^\| `(BFF_[A-Z_]+)` \|", contract.read_text(), re.M))
    assert named <= _variables_in_code()
