"""Reading a grid file: YAML with the line of every key, and errors that point there.

Every refusal of a grid file is a `GridError` naming the file, the line where
it can, the key path and what was expected, so `python -m tlbench.grid` can
print it and exit 2 before any trial starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple  # of str (mapping keys) and int (list indices)


class GridError(Exception):
    """A grid file (or a --set / --profile) that cannot be run."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, path: KeyPath = ()):
        self.message, self.file, self.line, self.path = message, file, line, path
        where = file or "<grid>"
        if line is not None:
            where += f":{line}"
        key = format_path(path)
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")


def format_path(path: Iterable) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# A grid file spelt out in full is a few thousand values; aliases may share
# subtrees, but one whose expansion passes this bound is an alias bomb, and
# every later step (validation, deep copies, hashing) would walk the expansion.
MAX_EXPANDED_VALUES = 1_000_000


class YamlDoc:
    """A parsed YAML file, plus the line of every key and list item in it.

    Loading is bounded in time and memory whatever the file holds: each node is
    indexed once however many aliases point at it, an alias to a node that
    contains it (a cycle) is refused, and so is a document whose aliases
    expand past `MAX_EXPANDED_VALUES`."""

    def __init__(self, path: str | Path):
        self.file = str(path)
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except OSError as exc:
            raise GridError(f"cannot read the grid file ({exc.strerror})", file=self.file) from None
        except UnicodeDecodeError as exc:
            line = Path(path).read_bytes()[: exc.start].count(b"\n") + 1
            raise GridError(
                f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}; save the file as UTF-8",
                file=self.file,
                line=line,
            ) from None
        self.lines: dict[KeyPath, int] = {}
        # libyaml's parser where PyYAML has it (same nodes and marks, ~10x faster on a grid of thousands of rows)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                self._index(node, (), set(), {})  # before construction, which folds `<<` merges into the mapping
            self.data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            raise GridError(
                f"YAML syntax error: {exc.problem}" + (f" ({exc.context})" if exc.context else ""),
                file=self.file,
                line=mark.line + 1 if mark else None,
            ) from None
        except yaml.YAMLError as exc:  # the reader's refusals (control characters) carry no problem_mark
            raise GridError(f"YAML error: {exc}", file=self.file) from None
        except RecursionError:
            raise GridError("YAML nested too deeply", file=self.file) from None
        finally:
            loader.dispose()

    def _index(self, node: yaml.Node, path: KeyPath, open_nodes: set[int], sizes: dict[int, int]) -> int:
        """Record the line of every key under `node`, once per node; returns its expanded size."""
        if id(node) in open_nodes:
            raise GridError(
                "an alias refers to a node that contains it (a cycle)", file=self.file, line=node.start_mark.line + 1, path=path
            )
        if id(node) in sizes:  # an alias to a node already indexed: its lines are known where it is defined
            return sizes[id(node)]
        self.lines[path] = node.start_mark.line + 1
        open_nodes.add(id(node))
        size = 1
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise GridError("a key must be a plain word or number", file=self.file, line=key_node.start_mark.line + 1, path=path)
                key = key_node.value
                if key in seen:  # YAML would silently keep the last one
                    raise GridError(f"duplicate key {key!r}", file=self.file, line=key_node.start_mark.line + 1, path=path)
                seen.add(key)
                size += 1 + self._index(value_node, (*path, key), open_nodes, sizes)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                size += self._index(item, (*path, i), open_nodes, sizes)
        open_nodes.discard(id(node))
        sizes[id(node)] = size
        if size > MAX_EXPANDED_VALUES:
            raise GridError(
                f"the YAML expands to more than {MAX_EXPANDED_VALUES:,} values (aliases of aliases?)",
                file=self.file,
                line=node.start_mark.line + 1,
                path=path,
            )
        return size

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor the file spells out."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, message: str, path: KeyPath) -> GridError:
        return GridError(message, file=self.file, line=self.line(path), path=path)
