"""`python -m canao ...` is the `canao` command."""

from __future__ import annotations

from canao.cli import run

run()
