"""Run the README's library example ("Use it from your own Lightning project") exactly as printed there.

    python scripts/library_example.py                           # the README's code, library defaults
    python scripts/library_example.py --steps-per-execution 32  # the same with the data's Keras steps_per_execution

scripts/benchmark.py times it against scripts/handwritten_loop.py; tests/project/test_readme.py runs it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The Python block under the README's `<!-- example -->` marker."""
    return re.search(r"<!-- example: .*? -->\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-per-execution", type=int, default=1, help="passed to the data module if > 1")
    parser.add_argument("--max-epochs", type=int, default=5, help="the README's 5, or fewer for a smoke test")
    args = parser.parse_args()
    code = readme_example().replace("max_epochs=5", f"max_epochs={args.max_epochs}", 1)
    if args.steps_per_execution > 1:
        code = code.replace("batch_size=32", f"batch_size=32, steps_per_execution={args.steps_per_execution}", 1)
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main()
