"""Write one benchmark's section into docs/results.md, leaving the other sections alone.

Each section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers; a bench
replaces its own section (or appends it) and states the command that produced it.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
IMAGES = ROOT / "docs" / "img"
HEADER = ("# Results\n\nEvery figure here is written by a script under `bench/`; each section "
          "names the command that produced it. Rerun it to reproduce the section.\n")


def write_section(name: str, title: str, command: str, body: str) -> Path:
    """Replace (or append) section ``name`` of docs/results.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = (f"<!-- {name}:start -->\n## {title}\n\nProduced by `{command}`.\n\n"
               f"{body.strip()}\n<!-- {name}:end -->")
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->",
                         re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return RESULTS


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
