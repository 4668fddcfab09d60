"""Kibana saved objects (``deploy/kibana/*.ndjson``), parsed and translated for checking.

No Kibana can be installed where the tests run, so the dashboards are checked the other way
round: every Lens visualisation is reduced to the fields and operations it uses, and to the
Elasticsearch aggregation it runs (terms / date_histogram buckets over sum metrics, formula
columns computed from those sums), which the tests run against the real views. Anything outside
that small subset is an error here, never a silent skip: a check that cannot read a column
must not pass it.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from clickstream.errors import ClickstreamError


class SavedObjectError(ClickstreamError):
    """A saved object is malformed, inconsistent, or uses a feature this module cannot check."""


@dataclass(frozen=True, slots=True)
class Reference:
    """One entry of a saved object's ``references``."""

    name: str
    type: str
    id: str


@dataclass(frozen=True, slots=True)
class SavedObject:
    """One line of an ndjson export: type, id, attributes and references."""

    type: str
    id: str
    attributes: Mapping[str, Any]
    references: tuple[Reference, ...]

    @property
    def title(self) -> str:
        """The object's title (every importable type has one)."""
        return str(self.attributes.get("title", ""))

    def reference(self, name: str) -> Reference:
        """The reference called ``name``."""
        for ref in self.references:
            if ref.name == name:
                return ref
        raise SavedObjectError(f"{self.type} {self.id!r} has no reference named {name!r}")


def parse_ndjson(text: str) -> list[SavedObject]:
    """Saved objects of an ndjson export (blank lines and the export summary line skipped)."""
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SavedObjectError(f"line {number}: not JSON: {exc}") from exc
        if "exportedCount" in raw:
            continue
        try:
            objects.append(
                SavedObject(
                    type=raw["type"],
                    id=raw["id"],
                    attributes=raw["attributes"],
                    references=tuple(
                        Reference(r["name"], r["type"], r["id"]) for r in raw["references"]
                    ),
                )
            )
        except (KeyError, TypeError) as exc:
            raise SavedObjectError(f"line {number}: not a saved object: missing {exc}") from exc
    return objects


def load_ndjson(path: Path) -> list[SavedObject]:
    """Saved objects of the ndjson file at ``path``."""
    return parse_ndjson(path.read_text(encoding="utf-8"))


def by_type(objects: Sequence[SavedObject], type_: str) -> list[SavedObject]:
    """The objects of one type, in file order."""
    return [obj for obj in objects if obj.type == type_]


# --- metric expressions: what a Lens metric column computes from per-bucket aggregations ---


@dataclass(frozen=True, slots=True)
class FieldAgg:
    """A metric aggregation over one field, e.g. ``sum(clicks)``."""

    operation: str
    field: str


@dataclass(frozen=True, slots=True)
class Number:
    """A literal in a formula."""

    value: float


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """``left <op> right``, op one of tinymath's add, subtract, multiply, divide."""

    op: str
    left: Expr
    right: Expr


Expr: TypeAlias = FieldAgg | Number | BinaryOp

# Lens operation -> Elasticsearch metric aggregation. Only these are translated.
METRIC_AGGS = {"sum": "sum", "min": "min", "max": "max", "average": "avg"}
_OPERATORS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}
_ARITHMETIC: Mapping[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "subtract": operator.sub,
    "multiply": operator.mul,
    "divide": operator.truediv,
}
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.]*)|(?P<sym>[()+\-*/]))")


def _tokens(formula: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(formula.rstrip()):
        match = _TOKEN.match(formula, pos)
        if match is None or match.lastgroup is None:
            raise SavedObjectError(f"formula {formula!r}: cannot read from {formula[pos:]!r}")
        yield match.lastgroup, match.group(match.lastgroup)
        pos = match.end()


def parse_formula(formula: str) -> Expr:
    """The expression of a Lens formula in the subset checked here: ``op(field)`` calls of
    METRIC_AGGS operations, numbers, ``+ - * /`` and parentheses (no kql=, shift=, functions)."""
    tokens = list(_tokens(formula))
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(kind: str, value: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise SavedObjectError(f"formula {formula!r}: expected {value or kind} at {token}")
        pos += 1
        return token[1]

    def primary() -> Expr:
        token = peek()
        if token == ("sym", "("):
            take("sym", "(")
            inner = additive()
            take("sym", ")")
            return inner
        if token is not None and token[0] == "num":
            return Number(float(take("num")))
        operation = take("name")
        if operation not in METRIC_AGGS:
            raise SavedObjectError(f"formula {formula!r}: unsupported function {operation!r}")
        take("sym", "(")
        field_name = take("name")
        take("sym", ")")
        return FieldAgg(operation, field_name)

    def chain(operand: Callable[[], Expr], symbols: str) -> Expr:
        left: Expr = operand()
        while (token := peek()) is not None and token[0] == "sym" and token[1] in symbols:
            take("sym")
            left = BinaryOp(_OPERATORS[token[1]], left, operand())
        return left

    def multiplicative() -> Expr:
        return chain(primary, "*/")

    def additive() -> Expr:
        return chain(multiplicative, "+-")

    expr = additive()
    if peek() is not None:
        raise SavedObjectError(f"formula {formula!r}: unexpected {peek()}")
    return expr


def field_aggs(expr: Expr) -> set[FieldAgg]:
    """Every field aggregation an expression reads."""
    if isinstance(expr, FieldAgg):
        return {expr}
    if isinstance(expr, BinaryOp):
        return field_aggs(expr.left) | field_aggs(expr.right)
    return set()


def evaluate(expr: Expr, values: Mapping[FieldAgg, float | None]) -> float | None:
    """The value of ``expr`` given each aggregation's value; None when a part is missing or a
    division has a zero divisor (Lens shows such a cell empty, never as 0)."""
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, FieldAgg):
        return values[expr]
    left, right = evaluate(expr.left, values), evaluate(expr.right, values)
    if left is None or right is None or (expr.op == "divide" and right == 0):
        return None
    return _ARITHMETIC[expr.op](left, right)


# --- Lens layers ---


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucketed column: ``terms`` or ``date_histogram`` on a field."""

    column_id: str
    operation: str
    field: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric column and what it computes (a formula's hidden columns resolved away)."""

    column_id: str
    label: str
    expr: Expr
    formula: str | None
    empty_as_null: bool


@dataclass(frozen=True, slots=True)
class LensLayer:
    """One form-based Lens layer: its data view, buckets (outermost first) and metrics."""

    visualization_id: str
    layer_id: str
    data_view_id: str
    buckets: tuple[Bucket, ...]
    metrics: tuple[Metric, ...]

    def field_uses(self) -> set[tuple[str, str]]:
        """Every (field, operation) the layer runs, formulas included."""
        uses = {(bucket.field, bucket.operation) for bucket in self.buckets}
        for metric in self.metrics:
            uses |= {(agg.field, agg.operation) for agg in field_aggs(metric.expr)}
        return uses

    def metric(self, column_id: str) -> Metric:
        """The metric column ``column_id``."""
        for metric in self.metrics:
            if metric.column_id == column_id:
                return metric
        raise SavedObjectError(f"{self.visualization_id}: no metric column {column_id!r}")

    def _names(self) -> dict[FieldAgg, str]:
        # One sub-aggregation per distinct field aggregation, shared by every column using it.
        aggs = {agg for metric in self.metrics for agg in field_aggs(metric.expr)}
        ordered = sorted(aggs, key=lambda agg: (agg.field, agg.operation))
        return {agg: f"m{i}" for i, agg in enumerate(ordered)}

    def search_body(self, time_field: str, time_from: str, time_to: str) -> dict[str, Any]:
        """The search Kibana runs for this layer over ``[time_from, time_to]`` (ISO strings):
        the time filter on the data view's time field, then the nested aggregations."""
        names = self._names()
        aggs: dict[str, Any] = {
            name: {METRIC_AGGS[agg.operation]: {"field": agg.field}} for agg, name in names.items()
        }
        for depth in reversed(range(len(self.buckets))):
            bucket = self.buckets[depth]
            aggs = {f"b{depth}": {**self._bucket_agg(bucket, time_from, time_to), "aggs": aggs}}
        time_range = {"gte": time_from, "lte": time_to, "format": "strict_date_optional_time"}
        return {
            "size": 0,
            "query": {"bool": {"filter": [{"range": {time_field: time_range}}]}},
            "aggs": aggs,
        }

    def _bucket_agg(self, bucket: Bucket, time_from: str, time_to: str) -> dict[str, Any]:
        params = bucket.params
        if bucket.operation == "terms":
            if params.get("otherBucket") or params.get("missingBucket"):
                raise SavedObjectError(
                    f"{self.visualization_id}: terms on {bucket.field}: the other/missing "
                    "buckets are extra requests this translation does not make"
                )
            order_by = params.get("orderBy", {})
            direction = params.get("orderDirection", "desc")
            if order_by.get("type") == "alphabetical":
                order: dict[str, str] = {"_key": direction}
            elif order_by.get("type") == "column":
                expr = self.metric(order_by["columnId"]).expr
                if not isinstance(expr, FieldAgg):
                    raise SavedObjectError(
                        f"{self.visualization_id}: terms ordered by a formula column"
                    )
                order = {self._names()[expr]: direction}
            else:
                raise SavedObjectError(f"{self.visualization_id}: terms order {order_by}")
            return {"terms": {"field": bucket.field, "size": int(params["size"]), "order": order}}
        interval = str(params.get("interval", ""))
        match = re.fullmatch(r"(\d+)([smhdwMy])", interval)
        if match is None:
            # "auto" depends on the time range and the histogram:barTarget setting.
            raise SavedObjectError(f"{self.visualization_id}: date interval {interval!r}")
        calendar = match.group(1) == "1" or match.group(2) in "wMy"
        histogram: dict[str, Any] = {
            "field": bucket.field,
            ("calendar_interval" if calendar else "fixed_interval"): interval,
            "time_zone": "UTC",
        }
        if params.get("includeEmptyRows"):
            histogram["min_doc_count"] = 0
            histogram["extended_bounds"] = {"min": time_from, "max": time_to}
        return {"date_histogram": histogram}

    def rows(self, response: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The table Lens draws from ``response``: one dict per innermost bucket (or one row
        without buckets), keyed by column id, in bucket order."""
        names = self._names()
        result: list[dict[str, Any]] = []

        def walk(node: Mapping[str, Any], depth: int, keys: dict[str, Any]) -> None:
            if depth < len(self.buckets):
                for item in node[f"b{depth}"]["buckets"]:
                    walk(item, depth + 1, {**keys, self.buckets[depth].column_id: item["key"]})
                return
            empty = node.get("doc_count", 1) == 0
            values = {agg: node[name]["value"] for agg, name in names.items()}
            row = dict(keys)
            for metric in self.metrics:
                row[metric.column_id] = (
                    None if empty and metric.empty_as_null else evaluate(metric.expr, values)
                )
            result.append(row)

        walk(response["aggregations"], 0, {})
        return result


def _resolve(
    vis_id: str, columns: Mapping[str, Any], node: Any, seen: frozenset[str] = frozenset()
) -> Expr:
    """The expression of a column id or a tinymath node (hidden formula columns followed)."""
    if isinstance(node, bool):
        raise SavedObjectError(f"{vis_id}: boolean in a formula")
    if isinstance(node, int | float):
        return Number(float(node))
    if isinstance(node, str):
        if node in seen:
            raise SavedObjectError(f"{vis_id}: column {node!r} refers to itself")
        if node not in columns:
            raise SavedObjectError(f"{vis_id}: reference to a missing column {node!r}")
        column = columns[node]
        operation = column.get("operationType")
        refs = column.get("references", [])
        if operation in METRIC_AGGS:
            return FieldAgg(operation, column["sourceField"])
        if operation == "formula" and len(refs) == 1:
            return _resolve(vis_id, columns, refs[0], seen | {node})
        if operation == "math":
            expr = _resolve(vis_id, columns, column["params"]["tinymathAst"], seen | {node})
            used = _column_refs(column["params"]["tinymathAst"])
            if used != set(refs):
                raise SavedObjectError(f"{vis_id}: math column {node!r} references {refs}")
            return expr
        raise SavedObjectError(f"{vis_id}: column {node!r}: unsupported operation {operation!r}")
    if isinstance(node, Mapping) and node.get("type") == "function":
        if node.get("name") not in _OPERATORS.values() or len(node.get("args", [])) != 2:
            raise SavedObjectError(f"{vis_id}: unsupported tinymath function {node.get('name')}")
        left, right = (_resolve(vis_id, columns, arg, seen) for arg in node["args"])
        return BinaryOp(node["name"], left, right)
    raise SavedObjectError(f"{vis_id}: unreadable tinymath node {node!r}")


def _column_refs(node: Any) -> set[str]:
    if isinstance(node, str):
        return {node}
    refs: set[str] = set()
    if isinstance(node, Mapping):
        for arg in node.get("args", []):
            refs |= _column_refs(arg)
    return refs


def _hidden(columns: Mapping[str, Any]) -> set[str]:
    """Columns that only exist inside a formula (referenced by another column)."""
    return {ref for column in columns.values() for ref in column.get("references", [])}


def lens_layers(obj: SavedObject) -> list[LensLayer]:
    """The form-based layers of a Lens object, each checked for consistency: the data view
    reference exists, every formula's text equals what its hidden columns compute, buckets are
    terms or date_histogram."""
    if obj.type != "lens":
        raise SavedObjectError(f"{obj.type} {obj.id!r} is not a lens object")
    sources = obj.attributes["state"]["datasourceStates"]
    unknown = {name for name, state in sources.items() if state.get("layers")} - {"formBased"}
    if unknown:
        raise SavedObjectError(f"lens {obj.id!r}: unsupported datasources {sorted(unknown)}")
    layers = []
    for layer_id, layer in sources["formBased"]["layers"].items():
        columns: Mapping[str, Any] = layer["columns"]
        if set(layer["columnOrder"]) != set(columns):
            raise SavedObjectError(f"lens {obj.id!r}: columnOrder differs from the columns")
        data_view = obj.reference(f"indexpattern-datasource-layer-{layer_id}")
        if data_view.type != "index-pattern":
            raise SavedObjectError(
                f"lens {obj.id!r}: layer {layer_id} refers to a {data_view.type}"
            )
        hidden = _hidden(columns)
        buckets, metrics = [], []
        for column_id in layer["columnOrder"]:
            column = columns[column_id]
            if column_id in hidden:
                continue
            if column.get("isBucketed"):
                if column["operationType"] not in ("terms", "date_histogram"):
                    raise SavedObjectError(
                        f"lens {obj.id!r}: bucket {column_id!r}: {column['operationType']!r}"
                    )
                buckets.append(
                    Bucket(
                        column_id,
                        column["operationType"],
                        column["sourceField"],
                        column.get("params", {}),
                    )
                )
                continue
            expr = _resolve(obj.id, columns, column_id)
            formula = None
            if column["operationType"] == "formula":
                formula = column["params"]["formula"]
                if parse_formula(formula) != expr:
                    raise SavedObjectError(
                        f"lens {obj.id!r}: formula {formula!r} of {column_id!r} differs from "
                        f"its hidden columns, which compute {expr}"
                    )
            metrics.append(
                Metric(
                    column_id,
                    column.get("label", column_id),
                    expr,
                    formula,
                    bool(column.get("params", {}).get("emptyAsNull", False)),
                )
            )
        layers.append(LensLayer(obj.id, layer_id, data_view.id, tuple(buckets), tuple(metrics)))
    return layers


def shown_columns(obj: SavedObject) -> set[str]:
    """Column ids the visualisation draws (XY, datatable, metric, partition charts)."""
    vis = obj.attributes["state"]["visualization"]
    kind = obj.attributes["visualizationType"]
    if kind == "lnsXY":
        shown: set[str] = set()
        for layer in vis["layers"]:
            shown |= set(layer.get("accessors", []))
            shown |= {layer[k] for k in ("xAccessor", "splitAccessor") if layer.get(k)}
        return shown
    if kind == "lnsDatatable":
        return {column["columnId"] for column in vis["columns"]}
    if kind == "lnsMetric":
        keys = ("metricAccessor", "secondaryMetricAccessor", "maxAccessor", "breakdownByAccessor")
        return {vis[k] for k in keys if vis.get(k)}
    raise SavedObjectError(f"lens {obj.id!r}: unsupported visualization type {kind!r}")


@dataclass(frozen=True, slots=True)
class Panel:
    """A dashboard panel and the saved object its reference points at."""

    panel_index: str
    type: str
    ref: Reference


def dashboard_panels(dashboard: SavedObject) -> list[Panel]:
    """The panels of a dashboard, each resolved through the dashboard's references the way
    Kibana 8/9 names them: ``panelRefName = panel_<i>``, reference ``<i>:panel_<i>``."""
    panels = []
    for raw in json.loads(dashboard.attributes["panelsJSON"]):
        index, ref_name = raw["panelIndex"], raw.get("panelRefName")
        if ref_name is None:
            raise SavedObjectError(f"dashboard {dashboard.id!r}: panel {index!r} is by value")
        ref = dashboard.reference(f"{index}:{ref_name}")
        if ref.type != raw["type"]:
            raise SavedObjectError(f"dashboard {dashboard.id!r}: panel {index!r} type mismatch")
        panels.append(Panel(index, raw["type"], ref))
    return panels


# Field types each operation accepts in Kibana (the field_caps type of the field).
NUMERIC_TYPES = frozenset(
    {
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
    }
)
FIELD_TYPES: Mapping[str, frozenset[str]] = {
    "terms": frozenset({"keyword", "ip", "boolean"}) | NUMERIC_TYPES,
    "date_histogram": frozenset({"date", "date_nanos"}),
    **{operation: NUMERIC_TYPES for operation in METRIC_AGGS},
}
