"""The walker over PyYAML's node graph: nodes keep their line, constructed objects do not, so the
parsers walk nodes and every error can say file:line. Shared by every YAML file knocknft reads (the
config, the knock client's profiles). Pure: text in, nodes and Problems out.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import TypeVar

import yaml

from knocknft.config.model import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES
from knocknft.config.scalars import Invalid
from knocknft.errors import ConfigError, Problem

T = TypeVar("T")


class Walker:
    """Checks a composed YAML document node by node, collecting located errors and warnings.

    Shared by every YAML file knocknft reads (the config, the knock client's profiles)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.visited = 0

    def error(self, node: yaml.Node | None, key: str, message: str, hint: str = "") -> None:
        self.errors.append(Problem(self.file, line_of(node), key, _cut(message), hint))

    def warn(self, node: yaml.Node | None, key: str, message: str, hint: str = "") -> None:
        self.warnings.append(Problem(self.file, line_of(node), key, _cut(message), hint))

    def visit(self, node: yaml.Node) -> None:
        """Count one node walked. Aliases let a small file name one list a million times (the
        "billion laughs"): past MAX_YAML_VALUES the walk stops with an error, not a hang."""
        self.visited += 1
        if self.visited > MAX_YAML_VALUES:
            raise ConfigError(
                [
                    Problem(
                        self.file,
                        line_of(node),
                        "",
                        f"the config holds more than {MAX_YAML_VALUES} values",
                        "YAML aliases (*name) that repeat a list multiply it; write it out",
                    )
                ]
            )

    def mapping(
        self, node: yaml.Node, key: str, allowed: tuple[str, ...] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The entries of a mapping node, by key, checking for unknown and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, key, f"expected a mapping of keys, got {_kind(node)}")
            return {}
        self.tag(node, key)
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            self.visit(key_node)
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            path = f"{key}.{name}" if key else name
            if name in entries:
                self.error(
                    key_node,
                    path,
                    f"{name!r} is given twice (first on line {line_of(entries[name][0])})",
                    "remove one of them",
                )
                continue
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name.lower(), allowed, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"known keys here: {', '.join(allowed)}"
                )
                self.error(key_node, path, f"unknown key {name!r}", hint)
                continue
            entries[name] = (key_node, value_node)
        return entries

    def scalar(self, node: yaml.Node, key: str, parse: Callable[[str], T]) -> T | None:
        self.visit(node)
        if not isinstance(node, yaml.ScalarNode) or node.value is None:
            self.error(node, key, f"expected a single value, got {_kind(node)}")
            return None
        if node.tag == "tag:yaml.org,2002:null":
            self.error(node, key, "has no value", "give it a value or remove the key")
            return None
        if node.tag.startswith("!"):
            # YAML reads a leading ! as a tag, which swallows knockd-style `!ack` flags.
            self.error(
                node,
                key,
                f"YAML read {node.tag!r} as a tag, not as part of the value",
                f"quote the value, e.g. {key.rsplit('.', 1)[-1]}: "
                f'"{" ".join(filter(None, [node.tag, str(node.value)]))}"',
            )
            return None
        if not self.tag(node, key):
            return None
        try:
            return parse(str(node.value))
        except Invalid as exc:
            self.error(node, key, exc.message, exc.hint)
            return None

    def items(self, node: yaml.Node, key: str) -> Iterator[tuple[str, yaml.Node]]:
        """A list's items with their paths; a lone scalar is taken as a one-item list."""
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            yield f"{key}[0]", node
            return
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, key, f"expected a list, got {_kind(node)}", "write [a, b, c]")
            return
        self.tag(node, key)
        for index, item in enumerate(node.value):
            yield f"{key}[{index}]", item

    def tag(self, node: yaml.Node, key: str) -> bool:
        """Whether the node has a tag plain YAML gives (str, int, a list...); an explicit
        `!!python/object` or `!!binary` means nothing here and is an error."""
        if node.tag in _PLAIN_TAGS or node.tag.startswith("!"):
            return True  # `!x` local tags: `scalar` explains them (knockd's `!ack`)
        self.error(node, key, f"the YAML tag {node.tag!r} has no meaning here", "remove the tag")
        return False

    def scalar_list(self, node: yaml.Node, key: str, parse: Callable[[str], T]) -> list[T]:
        values = [self.scalar(item, path, parse) for path, item in self.items(node, key)]
        return [v for v in values if v is not None]


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
)
_MAX_MESSAGE = 300


def _cut(message: str) -> str:
    """A message that quotes the config's text, kept to a readable length."""
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def line_of(node: yaml.Node | None) -> int | None:
    """The 1-based line a node starts on (None without a node): what every Problem points at."""
    return node.start_mark.line + 1 if node is not None else None


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing"
    return f"{node.value!r}"


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML's safe composer, refusing nesting deeper than MAX_YAML_DEPTH: its recursion (one
    Python frame per level) would otherwise end in a RecursionError, or exhaust the stack."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose_yaml(text: str, file: str) -> yaml.Node | None:
    """The document's node graph (None for an empty file); every failure is a located
    ConfigError: YAML syntax, characters YAML refuses (NUL...), nesting beyond MAX_YAML_DEPTH,
    a text over MAX_CONFIG_BYTES."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                Problem(
                    file,
                    1,
                    "",
                    f"{size} bytes is too big for a config",
                    f"at most {MAX_CONFIG_BYTES}",
                )
            ]
        )
    loader: _DepthLimitedLoader | None = None
    try:
        loader = _DepthLimitedLoader(text)  # reads the text: a character YAML refuses ends here
        return loader.get_single_node()
    except _TooDeep as exc:
        raise ConfigError(
            [
                Problem(
                    file,
                    exc.mark.line + 1,
                    "",
                    f"nested more than {MAX_YAML_DEPTH} levels deep",
                    "a config needs four levels: options or doors, a door, its keys, a list",
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            [
                Problem(
                    file,
                    line,
                    "",
                    f"not valid YAML: {exc.problem or exc}",
                    "check the indentation and quoting",
                )
            ]
        ) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (NUL, most control characters): its position is a
        # character offset into the text.
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            [
                Problem(
                    file,
                    line,
                    "",
                    f"not valid YAML: character U+{exc.character:04X} is not allowed",
                    "remove it; a config is plain text",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, "", f"not valid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
