"""Reading a strict YAML file: nodes that remember where they were written.

Shared by the pipeline file (:mod:`sealtune.pipeline.schema`) and the
release gate's policy (:mod:`sealtune.assess.policy`), which sit in
different layers; so it lives below both.

:func:`read_source` parses the file with PyYAML's *composer* under
``SafeLoader`` (no object construction at all) and turns the node graph into
:class:`YMap`, :class:`YSeq` and :class:`YScalar`, each carrying the 1-based
line and column it started at, so that every later error can say
``pipeline.yaml:12:5: steps.train.lora.rank: must be an integer >= 1``.

What this protects against: the billion-laughs expansion and shared mutable
values (anchors and aliases are refused outright, not expanded), object
construction through tags (every explicit tag, ``!!python/...`` included, is
refused), a duplicate key silently overriding an earlier one (PyYAML keeps
the last: here it is an error naming both lines), and oversized or deeply
nested input (at most :data:`MAX_BYTES` bytes, :data:`MAX_DEPTH` levels and
:data:`MAX_NODES` nodes, so reading is linear in the file). What it does not:
judge what the values mean; that is the schema's job (the pipeline's, the
gate policy's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sealtune.errors import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Mark", "YMap", "YNode", "YScalar", "YSeq",
           "parse_text", "read_source", "to_plain"]

MAX_BYTES = 256 << 10
MAX_DEPTH = 16
MAX_NODES = 20_000
Scalar = str | int | float | bool | None
# YAML 1.1 (PyYAML) reads 1e-5 as a string: a plain scalar of this shape is a number.
_EXPONENT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_CONSTRUCT = {"tag:yaml.org,2002:int": "construct_yaml_int",
              "tag:yaml.org,2002:float": "construct_yaml_float",
              "tag:yaml.org,2002:bool": "construct_yaml_bool",
              "tag:yaml.org,2002:null": "construct_yaml_null"}


@dataclass(frozen=True)
class Mark:
    """Where a node starts: the file as the user named it, 1-based line and column."""

    source: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"

    def error(self, path: str, problem: str, *, hint: str | None = None) -> ConfigError:
        """A :class:`ConfigError` ``FILE:LINE:COL: PATH: PROBLEM`` with ``hint``."""
        where = f"{self}: {path}: " if path else f"{self}: "
        return ConfigError(where + problem, hint=hint)


@dataclass(frozen=True)
class YScalar:
    """A scalar: its value (str, int, float, bool or None) and whether it was unquoted."""

    value: Scalar
    mark: Mark
    plain: bool


@dataclass(frozen=True)
class YSeq:
    """A sequence of nodes."""

    items: tuple[YNode, ...]
    mark: Mark


@dataclass(frozen=True)
class YMap:
    """A mapping with string keys, in file order, and where each key was written."""

    items: dict[str, YNode]
    mark: Mark
    key_marks: dict[str, Mark] = field(default_factory=dict)


YNode = YScalar | YSeq | YMap


class _Loader(yaml.SafeLoader):
    """The composer of ``SafeLoader`` with anchors, aliases and tags refused, size bounded."""

    def __init__(self, text: str, source: str, what: str) -> None:
        super().__init__(text)
        self.source = source
        self.what = what
        self.depth = 0
        self.count = 0

    def refuse(self, mark: Any, problem: str, hint: str) -> ConfigError:
        return Mark(self.source, mark.line + 1, mark.column + 1).error("", problem, hint=hint)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise self.refuse(event.start_mark, "anchors and aliases (& and *) are not allowed",
                              "write each value out in full")
        if getattr(event, "tag", None) is not None:
            raise self.refuse(event.start_mark, f"YAML tag {event.tag!r} is not allowed",
                              "remove the tag: values are plain strings, numbers, lists and "
                              "mappings")
        self.count += 1
        self.depth += 1
        if self.count > MAX_NODES or self.depth > MAX_DEPTH:
            raise self.refuse(event.start_mark, f"more than {MAX_NODES} values or "
                              f"{MAX_DEPTH} levels of nesting", f"a {self.what} is small and flat")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_PIPELINE_EXAMPLE = "write an example with 'sealtune pipeline init DIR'"


def read_source(path: Path, *, display: str | None = None, what: str = "pipeline file",
                example: str = _PIPELINE_EXAMPLE) -> YMap:
    """Read and compose the YAML file at ``path``; the top level must be a mapping.

    Args:
        path: the file.
        display: how errors name the file (default: ``path`` as given).
        what: what the file is, for messages (``pipeline file``, ``gate policy``).
        example: the hint for a missing or empty file (how to write an example).

    Raises:
        ConfigError: missing, unreadable, too large, not UTF-8, not YAML, or refused
            (anchors, aliases, tags, duplicate keys, non-string keys), with line and column.
    """
    source = display or str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{source}: {what} not found", hint=example) from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({type(exc).__name__})",
                          hint="check the path and its permissions") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES} bytes",
                          hint=f"a {what} names its inputs; it does not hold data")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text", hint="save it as UTF-8") from None
    return parse_text(text, source=source, what=what, example=example)


def parse_text(text: str, *, source: str, what: str = "pipeline file",
               example: str = _PIPELINE_EXAMPLE) -> YMap:
    """Compose YAML ``text`` (see :func:`read_source`); errors name ``source``."""
    loader = _Loader(text, source, what)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML ({exc.problem or exc.context})",
                          hint="check the indentation and quoting on that line") from None
    except yaml.YAMLError:
        raise ConfigError(f"{source}: not valid YAML", hint="check the file") from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(f"{source}: the file is empty", hint=example)
    top = _convert(node, source)
    if not isinstance(top, YMap):
        raise top.mark.error("", "the top level must be a mapping of keys to values")
    return top


def _mark(node: yaml.Node, source: str) -> Mark:
    return Mark(source, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, source: str) -> YNode:
    """Node graph -> Y* values (recursive: the loader bounded the depth)."""
    mark = _mark(node, source)
    if isinstance(node, yaml.MappingNode):
        items: dict[str, YNode] = {}
        keys: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key_mark = _mark(key_node, source)
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise key_mark.error("", "keys must be plain strings",
                                     hint="quote the key or rename it")
            if key in keys:
                raise key_mark.error("", f"duplicate key {key!r} (first at line "
                                     f"{keys[key].line})", hint="keep one of them")
            keys[key] = key_mark
            items[key] = _convert(value_node, source)
        return YMap(items, mark, keys)
    if isinstance(node, yaml.SequenceNode):
        return YSeq(tuple(_convert(n, source) for n in node.value), mark)
    assert isinstance(node, yaml.ScalarNode)
    return YScalar(_scalar(node), mark, plain=node.style is None)


def _scalar(node: yaml.ScalarNode) -> Scalar:
    method = _CONSTRUCT.get(node.tag)
    if method is not None:
        value: Scalar = getattr(_CONSTRUCTOR, method)(node)
        return value
    text = str(node.value)
    if node.style is None and _EXPONENT.match(text):
        return float(text)
    return text  # strings, and timestamps or binary kept as the text written


#: Only its scalar constructors are used (they read the node alone, never a stream).
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def to_plain(node: YNode) -> Any:
    """The plain Python value (dicts, lists, scalars) of a node, positions dropped."""
    if isinstance(node, YMap):
        return {k: to_plain(v) for k, v in node.items.items()}
    if isinstance(node, YSeq):
        return [to_plain(v) for v in node.items]
    return node.value
