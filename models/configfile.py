"""Declaration files (aggregates, rules): YAML read with line numbers, and the wording
of their problems.

A declaration file has one top-level key whose value is a list (`aggregates: [...]`,
`rules: [...]`). `load_declarations` validates each item and reports every problem of
the file at once, one per line, in file order within each item:

    <file>:<line>: <noun> '<name>': <field>: <message>

where `<noun>` is the key without its plural s (`aggregate`, `rule`), `<name>` the
item's `name` (`#<n>` when it has none) and `<field>` the dotted location (`dotted`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from models.errors import ConfigError

__all__ = [
    "Loc",
    "dotted",
    "duplicate_keys",
    "load_declarations",
    "node_at",
    "pydantic_message",
    "read_list_document",
    "unknown_key",
]

#: Where in one item a problem is: keys and list indexes, as pydantic gives them.
Loc = tuple[str | int, ...]
T = TypeVar("T")


def dotted(loc: Loc) -> str:
    """`("window", "size")` → `window.size`; `("group_by", 0)` → `group_by[0]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def unknown_key(expected: Sequence[str] | None = None) -> str:
    """The message for a key no model has, with the keys it may have instead."""
    return "unknown key; expected one of " + ", ".join(expected) if expected else "unknown key"


def pydantic_message(error: Any) -> str:
    """A pydantic error as a problem: `required` for a missing field, else its message
    starting in lower case (it follows `<field>: `)."""
    if error["type"] == "missing":
        return "required"
    message: str = error["msg"]
    return message[:1].lower() + message[1:]


# ---------------------------------------------------------------------------------------
# YAML with line numbers


def node_at(node: yaml.Node, loc: Loc) -> yaml.Node:
    """The deepest YAML node along `loc`; the key's node when `loc` ends at a key."""
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = key if depth == len(loc) - 1 else value
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def duplicate_keys(node: yaml.Node, problems: list[tuple[yaml.Node, str]]) -> None:
    """Append (key node, problem) for each key given twice in a mapping under `node`."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                problems.append((key, f"{key.value}: given twice"))
            seen.add(key.value)
            duplicate_keys(value, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            duplicate_keys(item, problems)


def read_list_document(
    path: Path, key: str, error: type[ConfigError]
) -> tuple[list[Any], yaml.SequenceNode, list[str]]:
    """A YAML file whose top is `{key: [...]}`: the items, their nodes (for line numbers)
    and the problems with the top level. Raises `error` when there is no such list."""

    def at(node: yaml.Node | None) -> str:
        return f"{path}:{node.start_mark.line + 1}" if node is not None else str(path)

    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise error([f"{where}: not valid YAML: {exc}"]) from None

    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        article = "an" if key[0] in "aeiou" else "a"
        raise error([f"{at(root)}: expected a mapping with {article} `{key}` list at the top"])
    assert isinstance(root, yaml.MappingNode)
    problems = [
        f"{at(node)}: {node.value}: unknown key; expected {key}"
        for node, _ in root.value
        if node.value != key
    ]
    items = next(value for node, value in root.value if node.value == key)
    assert isinstance(items, yaml.SequenceNode)
    return data[key], items, problems


def load_declarations(
    path: Path,
    key: str,
    error: type[ConfigError],
    validate: Callable[[Any], tuple[T | None, list[tuple[Loc, str]]]],
) -> list[T]:
    """The items of the `{key: [...]}` file at `path`, each validated by `validate`.

    `validate(raw item)` returns the item (None when it is invalid) and its problems
    as (location, message) pairs. Keys given twice and names used twice are found
    here. Raises `error` listing every problem of the file (module docstring)."""
    path = Path(path)
    noun = key.removesuffix("s")

    def at(node: yaml.Node) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    raw_items, items, problems = read_list_document(path, key, error)
    loaded: list[T] = []
    first: dict[str, yaml.Node] = {}  # name → its item's node
    for index, (raw, node) in enumerate(zip(raw_items, items.value, strict=True)):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"{noun} {name!r}" if isinstance(name, str) else f"{noun} #{index + 1}"
        found: list[tuple[int, str]] = []  # (line, problem) of this item

        def report(
            loc: Loc, message: str, node: yaml.Node = node, label: str = label, found: list = found
        ) -> None:
            where = node_at(node, loc)
            found.append((where.start_mark.line, f"{at(where)}: {label}: {message}"))

        duplicates: list[tuple[yaml.Node, str]] = []
        duplicate_keys(node, duplicates)
        for key_node, message in duplicates:
            found.append((key_node.start_mark.line, f"{at(key_node)}: {label}: {message}"))
        if isinstance(name, str):
            if name in first:
                line = first[name].start_mark.line + 1
                report(("name",), f"name: used twice (first at line {line})")
            else:
                first[name] = node
        item, item_problems = validate(raw)
        for loc, message in item_problems:
            report(loc, message)
        if found:
            problems += [message for _, message in sorted(found, key=lambda item: item[0])]
        elif item is not None:
            loaded.append(item)
    if problems:
        raise error(problems)
    return loaded
