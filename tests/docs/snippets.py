"""Code blocks of README.md and docs/, and the marked regions of dags/ they copy.

Every ```python block of the documentation is one of two kinds, named by an HTML comment on the
line right above it (invisible on GitHub):

* ``<!-- snippet: dags/<file>.py <region> -->``: a copy of the region between
  ``# [START <region>]`` and ``# [END <region>]`` of an example DAG the suite runs (the way
  Airflow's own docs include their examples). Marker lines of other regions nested inside are
  left out, and the region is dedented.
* ``<!-- snippet: executed -->``: a self-contained script that ``tests/docs`` runs as it stands
  (against an emulator it starts itself).

After editing a region, refresh the copies with ``python -m tests.docs.snippets --write``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<spec>.+?)\s*-->\s*$")
REGION_LINE = re.compile(r"^\s*# \[(START|END) (\S+)\]\s*$")
EXECUTED = "executed"


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    doc: Path
    line: int  # 1-based line of its opening fence
    language: str
    code: str
    marker: str | None  # the snippet spec above it, if any
    n_lines: int = 0  # lines between the fences

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    @property
    def region(self) -> tuple[str, str] | None:
        """``(dag file, region name)`` for a copied region, else None."""
        if not self.marker or self.marker == EXECUTED:
            return None
        path, _, name = self.marker.partition(" ")
        return path, name.strip()


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc``, in order."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+)\s*(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence.group(1):
            j += 1
        above = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        m = MARKER.match(above.strip())
        body = lines[i + 1:j]
        out.append(Block(doc, i + 1, fence.group(2).lower(), "\n".join(body) + "\n" if body else "",
                         m.group("spec") if m else None, len(body)))
        i = j + 1
    return out


def region(path: str, name: str) -> str:
    """The text of region ``name`` of ``path`` (relative to the repo), dedented, markers removed."""
    lines = (REPO / path).read_text(encoding="utf-8").splitlines()
    starts = [n for n, line in enumerate(lines) if line.strip() == f"# [START {name}]"]
    ends = [n for n, line in enumerate(lines) if line.strip() == f"# [END {name}]"]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise LookupError(f"{path}: region {name!r} needs exactly one '# [START {name}]' and one '# [END {name}]'")
    body = [line for line in lines[starts[0] + 1:ends[0]] if not REGION_LINE.match(line)]
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n"


def write() -> list[str]:
    """Replace every copied block with its region's current text; the docs that changed."""
    changed = []
    for doc in doc_files():
        text = doc.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for block in reversed(blocks(doc)):
            if block.region is None:
                continue
            lines[block.line:block.line + block.n_lines] = [region(*block.region)]
        new = "".join(lines)
        if new != text:
            doc.write_text(new, encoding="utf-8")
            changed.append(str(doc.relative_to(REPO)))
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.docs.snippets --write")
    for name in write():
        print("updated", name)
