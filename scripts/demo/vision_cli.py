"""``endist-vision`` run in the demo's own process (the demo parts' one way to call it)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from endist_vision.cli import main as cli  # noqa: E402


def run(argv: list) -> None:
    """``endist-vision ARGV``; a non-zero exit stops the demo part with the command in the message."""
    rc = cli([str(a) for a in argv])
    if rc != 0:
        raise SystemExit(f"endist-vision {' '.join(map(str, argv))} failed with exit code {rc}")
