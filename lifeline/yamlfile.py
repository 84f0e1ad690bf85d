"""Configuration files in YAML that name the line of each problem (bank channels, risk rules):
the data with its node tree, a node's line, duplicate keys, a field's path as an operator reads it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import yaml


class YamlProblem(Exception):
    """The file cannot be read (`line` 0) or is not valid YAML (`line` where the parser stopped)."""

    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line = line
        self.problem = problem

    @property
    def unreadable(self) -> bool:
        return self.line == 0


def field_path(parts: Iterable[Any]) -> str:
    """`rules[1].amount_above_fen`; the file itself is `(file)`."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def unknown_or_missing(error: Any) -> tuple[list[Any], str, str] | None:
    """A JSON Schema error about a field that should not be there or is missing, as the loaders'
    `describe` answers it (node path to point at, field path to name, what is wrong); None for
    any other error."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
        return where + [("key", extra[0])], field_path(where + [extra[0]]), "unknown field"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return where, field_path(where + [missing[0]]), "required field is missing"
    return None


def read_yaml(path: str | os.PathLike[str]) -> tuple[Any, yaml.Node | None]:
    """The file's data and its node tree (with marks); YamlProblem when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlProblem(0, str(exc)) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlProblem(mark.line + 1 if mark is not None else 1,
                          " ".join(filter(None, (exc.context, exc.problem))) or str(exc)) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(1, str(exc)) from exc
    finally:
        loader.dispose()
    return data, node


def node_line(root: yaml.Node | None, path: list[Any]) -> int:
    """The 1-based line of the node at ``path`` (a ``("key", name)`` step: the key itself);
    where the path leaves the tree, the deepest node reached."""
    node = root
    if node is None:
        return 1
    for step in path:
        if isinstance(node, yaml.MappingNode):
            want_key = isinstance(step, tuple)
            name = step[1] if want_key else step
            found = None
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(name):
                    found = key_node if want_key else value_node  # the last one, as the loader keeps
            if found is None:
                break
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            break
    return node.start_mark.line + 1


def duplicate_keys(node: yaml.Node | None, path: list[Any], out: list[tuple[int, str]]) -> None:
    """PyYAML keeps the last of two equal keys silently; the operator hears of it."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None:
                if key in seen:
                    out.append((key_node.start_mark.line + 1,
                                f"{field_path(path + [key])}: duplicate key (also on line {seen[key]})"))
                seen.setdefault(key, key_node.start_mark.line + 1)
            duplicate_keys(value_node, path + [key], out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            duplicate_keys(item, path + [i], out)


def problems(data: Any, node: yaml.Node | None, validator: Any,
             describe: Callable[[Any], tuple[list[Any], str, str]],
             rules: Callable[[dict[str, Any], yaml.Node | None, list[tuple[int, str]]], None],
             top: str) -> list[tuple[int, str]]:
    """Every problem of a file read by `read_yaml`, `(line, "field: what")`, one per problem in
    file order: duplicate keys; its JSON Schema's errors in the operator's words (`describe`: the
    node path to point at, the field to name, what is wrong); then, when the schema holds, what it
    cannot say (`rules`). `top` names what the file must hold."""
    errors: list[tuple[int, str]] = []
    duplicate_keys(node, [], errors)
    if not isinstance(data, dict):
        errors.append((node_line(node, []), f"(file): must be a mapping with {top}"))
    else:
        for err in validator.iter_errors(data):
            at, where, what = describe(err)
            errors.append((node_line(node, at), f"{where}: {what}"))
        if not errors:
            rules(data, node, errors)
    return sorted(dict.fromkeys(errors), key=lambda e: e[0])


def problem_lines(origin: str, errors: Iterable[tuple[int, str]]) -> str:
    """One problem a line, each `file:line: field: what`, as compilers do."""
    return "\n".join(f"{origin}:{line}: {text}" for line, text in errors)
