"""Reading a user's YAML (configs, sweep files, `--set` values) as plain data, or one clear error.

PyYAML's `safe_load` builds no objects but expands every alias: 526 bytes of nested `*name`
references (a "billion laughs") cost a sweep 26 s and 1.7 GB. DECISION: aliases are refused outright
rather than bounded by an expanded size, because no config of ours needs them and writing a value
out is always possible (an anchor `&name` that no alias uses is harmless and read as usual).
Malformed YAML, values PyYAML cannot build (e.g. a date `2001-13-45`), nesting too deep and
non-UTF-8 bytes each give one `ConceptLensError` that names the file and the line.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from conceptlens.errors import ConceptLensError
from conceptlens.text_input import read_user_text

SYNTAX_FIX = "fix the YAML syntax (UTF-8 text, `key: value` lines)."


class _AliasFound(Exception):
    def __init__(self, event: yaml.AliasEvent):
        super().__init__(event.anchor)
        self.anchor = event.anchor
        self.line = event.start_mark.line + 1 if event.start_mark else None


class _PlainLoader(yaml.SafeLoader):
    """`SafeLoader` that stops at the first alias, before anything is expanded."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _AliasFound(self.peek_event())
        return super().compose_node(parent, index)


def _where(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def parse_yaml_text(text: str, source: str, fix: str = SYNTAX_FIX):
    """The plain data (dicts, lists, str, numbers, ...) of one YAML document; `source` names it in errors."""
    loader = None
    try:
        loader = _PlainLoader(text)  # the reader already rejects unprintable characters here
        return loader.get_single_data()
    except _AliasFound as found:
        line = f" (line {found.line})" if found.line else ""
        raise ConceptLensError(
            f"{source} uses the YAML alias '*{found.anchor}'{line}; aliases are refused because a few bytes "
            "of them can expand to gigabytes.",
            f"write the value out in full instead of `&{found.anchor}` / `*{found.anchor}`.") from None
    except yaml.YAMLError as exc:
        said = [getattr(exc, part, None) for part in ("context", "problem")]
        problem = "; ".join(part for part in said if part) or str(exc).splitlines()[0]
        raise ConceptLensError(f"{source} is not valid YAML ({_where(exc)}{problem}).", fix) from exc
    except RecursionError as exc:
        raise ConceptLensError(f"{source} is not valid YAML (nested too deeply to read).", fix) from exc
    except (ValueError, TypeError) as exc:  # a value PyYAML parses but cannot build, e.g. a date 2001-13-45
        raise ConceptLensError(f"{source} holds a value YAML cannot read ({exc}).",
                               "quote the value to keep it as text, or correct it.") from exc
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_file(path: str | Path, what: str = "YAML file"):
    """The plain data of a user's YAML file (BOM allowed; aliases refused); errors name `what` and the path."""
    path = Path(path)
    return parse_yaml_text(read_user_text(path, what), f"{what} {path}")
