"""The README's "From Flax" section runs: every ```python block under that heading, in order.

Each block is executed on its own (each is self-contained, as a reader copies one), so a
snippet that stops working, or leans on an earlier one, fails here.
"""

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _section_blocks(title: str) -> list[str]:
  """The ```python blocks between the heading `title` and the next heading of its level or
  above (a `#` inside a code block is a comment, not a heading)."""
  lines = open(README, encoding="utf-8").read().splitlines()
  starts = [i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(title)}", line)]
  assert len(starts) == 1, f"expected one heading {title!r} in README.md, found {len(starts)}"
  level = len(lines[starts[0]]) - len(lines[starts[0]].lstrip("#"))
  body, in_code = [], False
  for line in lines[starts[0] + 1:]:
    if line.startswith("```"):
      in_code = not in_code
    heading = None if in_code else re.match(r"(#+) ", line)
    if heading and len(heading.group(1)) <= level:
      break
    body.append(line)
  return re.findall(r"```python\n(.*?)```", "\n".join(body) + "\n", flags=re.S)


BLOCKS = _section_blocks("From Flax")


def test_the_section_has_the_three_migration_paths():
  assert len(BLOCKS) == 3, BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs(index):
  exec(compile(BLOCKS[index], f"README.md (From Flax, snippet {index + 1})", "exec"), {})
