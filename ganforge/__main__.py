from __future__ import annotations

from ganforge.cli import app

app(prog_name="ganforge")
