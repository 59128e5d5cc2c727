"""Checkpoints crafted to run code when unpickled: the marker file must never appear."""

from __future__ import annotations

from pathlib import Path

PWNED = "pwned"  # what the crafted checkpoints' code would write; asserted absent after every case


class RunsCode:
    """Pickles as `exec(code)`: torch.load without weights_only would write the marker while loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)
