"""The requests the probe sends each route: filled from the app's OpenAPI document, or given.

Pure: from the inventory (probe/inventory.py, with the app's OpenAPI document) and an optional
`--requests` TOML file to one `RoutePlan` per route: the requests to send, or why the route is
not probed. A value for a parameter is taken, in order, from the parameter's `example` or
`examples`, then its schema's `example`, `examples`, `default`, `enum`/`const`, then made from
the schema's type within its bounds (an integer its `minimum`, else 1; a string its format's
example, or `probe` padded to `minLength`). Only required parameters are sent; optional ones
keep the app's defaults. Only safe methods (GET, HEAD, OPTIONS) are probed unless the requests
file names the route or `--unsafe` is given: a probe must not write into the user's database
by surprise. A route that needs a body, a cookie, or a parameter whose value cannot be made
(a `pattern`, an object) is listed with why, never silently skipped.

The requests file (TOML), every key optional but `path`:

    headers = { Authorization = "Bearer ..." }   # sent with every request of every route

    [[request]]
    method = "GET"                # default GET
    path = "/items/{item_id}"     # a route's path template, or a concrete path (/items/42)
    params = { item_id = 42, q = "x" }   # path parameters of a template, the rest the query
    json = { name = "x" }         # a JSON body
    headers = { Authorization = "Bearer ..." }
    weight = 1.0                  # several requests of one route: chosen in proportion

A route with requests in the file is probed with those only (they replace the generated ones);
the other routes keep theirs. A request whose method and path match no route is an error.
The top-level `headers` (and `--header "Name: value"` on the command line, which wins over the
file) go with every request, generated or given, under the request's own `headers`: an app
behind a login needs one token, not one `[[request]]` per route.
"""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
REQUEST_KEYS = frozenset({"method", "path", "params", "json", "headers", "weight"})
FILE_KEYS = frozenset({"request", "headers"})
UUID = "00000000-0000-4000-8000-000000000001"
STRING_FORMATS = {
    "uuid": UUID,
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "email": "probe@example.com",
    "uri": "https://example.com/",
    "ipv4": "127.0.0.1",
}
_PARAM = re.compile(r"{([^}:]+)(?::([^}]+))?}")
# Header names whose value may be a credential: kept out of the run's record (`to_record`).
SECRET = re.compile(r"auth|cookie|token|key|secret|session|password", re.IGNORECASE)
REDACTED = "<redacted>"


class RequestsFileError(ValueError):
    """The `--requests` file is not what the probe reads: one line for the user."""


@dataclass(frozen=True)
class ProbeRequest:
    """One request of a route, as the locustfile sends it (loadtests/locustfiles/probe.py)."""

    label: str
    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    source: str = "openapi"

    def to_dict(self, ok: list[int] | None = None) -> dict[str, Any]:
        """Plain data for the locustfile (`ok`: the statuses that count as a success)."""
        return {**asdict(self), "ok": list(ok or [])}

    def to_record(self) -> dict[str, Any]:
        """What the run's record (`probe.json`) keeps: the request with the value of every
        header that may be a credential replaced (`Authorization`, `Cookie`, `*token*`, ...);
        the locustfile's own copy under `requests/` keeps them, for the cells and `--resume`."""
        shown = {k: REDACTED if SECRET.search(k) else v for k, v in self.headers.items()}
        return {**asdict(self), "headers": shown}


@dataclass
class RoutePlan:
    """A route and what the probe will send it (or why it will not)."""

    route: dict[str, Any]
    requests: list[ProbeRequest] = field(default_factory=list)
    not_probed: str = ""

    @property
    def id(self) -> str:
        """The route's id."""
        return str(self.route["id"])

    @property
    def label(self) -> str:
        """`GET /items/{item_id}`."""
        return f"{self.route['method']} {self.route['path']}"


class Unfillable(Exception):
    """No value can be made for a parameter (its reason is the message)."""


def resolve(schema: Mapping[str, Any], document: Mapping[str, Any]) -> dict[str, Any]:
    """A schema with its `$ref` (into `#/components/schemas`) followed."""
    seen = 0
    current: Mapping[str, Any] = schema
    while "$ref" in current and seen < 20:
        ref = str(current["$ref"])
        if not ref.startswith("#/"):
            raise Unfillable(f"an external $ref {ref}")
        node: Any = document
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        current, seen = node, seen + 1
    return dict(current)


def sample(schema: Mapping[str, Any], document: Mapping[str, Any]) -> Any:
    """A value valid for `schema`, from its examples and defaults first; Unfillable if none."""
    schema = resolve(schema, document)
    if "example" in schema:
        return schema["example"]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if resolve(o, document).get("type") != "null"]
        if options:
            return sample(options[0], document)
    kind = schema.get("type")
    if kind == "integer":
        return _number(schema, 1, int)
    if kind == "number":
        return _number(schema, 1.0, float)
    if kind == "boolean":
        return True
    if kind == "string":
        if schema.get("format") in STRING_FORMATS:
            return STRING_FORMATS[schema["format"]]
        if "pattern" in schema:
            raise Unfillable(f"its value must match the pattern {schema['pattern']!r}")
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        text = "probe".ljust(low, "x")
        return text if high is None else text[: int(high)]
    if kind == "array":
        return [sample(schema.get("items") or {}, document)]
    raise Unfillable(f"no value can be made for a {kind or 'schema without a type'}")


def _number(schema: Mapping[str, Any], default: Any, cast: type) -> Any:
    value = default
    if "minimum" in schema:
        value = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"] + (1 if cast is int else 0.5)
    if "maximum" in schema and value > schema["maximum"]:
        value = schema["maximum"]
    return cast(value)


def parameter_value(parameter: Mapping[str, Any], document: Mapping[str, Any]) -> Any:
    """A value for one OpenAPI parameter object (its own examples first)."""
    if "example" in parameter:
        return parameter["example"]
    examples = parameter.get("examples")
    if isinstance(examples, Mapping) and examples:
        first = next(iter(examples.values()))
        if isinstance(first, Mapping) and "value" in first:
            return first["value"]
    return sample(parameter.get("schema") or {}, document)


def fill_path(template: str, values: Mapping[str, Any]) -> str:
    """`/items/{item_id}` with `item_id` put in (URL-quoted)."""
    from urllib.parse import quote

    def put(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise Unfillable(f"path parameter `{name}` has no value")
        safe = "/" if match.group(2) == "path" else ""
        return quote(str(values[name]), safe=safe)

    return _PARAM.sub(put, template)


def from_openapi(
    route: Mapping[str, Any],
    document: Mapping[str, Any],
    given_headers: Mapping[str, str] | None = None,
) -> ProbeRequest:
    """The route's one generated request; Unfillable with the reason when there is none. A
    required header the user gives for every request (`given_headers`) is not made up."""
    given = {k.lower() for k in given_headers or {}}
    operation = (document.get("paths") or {}).get(route["path"], {}).get(route["method"].lower())
    if operation is None:
        raise Unfillable("it is not in the app's OpenAPI document")
    body = operation.get("requestBody")
    if body and body.get("required", False):
        raise Unfillable("it needs a request body (give one with --requests)")
    path_values: dict[str, Any] = {}
    query: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for parameter in operation.get("parameters") or []:
        parameter = resolve(parameter, document)
        where, name = parameter.get("in"), parameter.get("name")
        if where != "path" and not parameter.get("required", False):
            continue
        if where == "header" and str(name).lower() in given:
            continue
        try:
            value = parameter_value(parameter, document)
        except Unfillable as exc:
            raise Unfillable(f"its {where} parameter `{name}`: {exc}") from None
        if where == "path":
            path_values[name] = value
        elif where == "query":
            query[name] = value
        elif where == "header":
            headers[name] = str(value)
        else:
            raise Unfillable(f"it needs the {where} `{name}` (give it with --requests)")
    return ProbeRequest(
        label=f"{route['method']} {route['path']}",
        method=route["method"],
        path=fill_path(route["path"], path_values),
        query=query,
        headers=headers,
    )


def template_regex(template: str) -> re.Pattern[str]:
    """A regex matching the concrete paths of a route's template."""
    parts, last = [], 0
    for match in _PARAM.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(
            f"(?P<{match.group(1)}>.+)"
            if match.group(2) == "path"
            else f"(?P<{match.group(1)}>[^/]+)"
        )
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + "$")


@dataclass(frozen=True)
class RequestsFile:
    """A parsed `--requests` file: its `[[request]]` tables and the headers for every request."""

    requests: list[dict[str, Any]]
    headers: dict[str, str]


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` (as curl's -H takes it) -> (name, value); ValueError when it is not."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ValueError(f"--header {text!r} is not `Name: value`")
    return name.strip(), value.strip()


def load_requests_file(path: Path) -> RequestsFile:
    """The `[[request]]` tables and top-level `headers` of a requests file; RequestsFileError
    on a bad file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise RequestsFileError(f"--requests {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RequestsFileError(f"--requests {path}: not TOML: {exc}") from None
    if extra := sorted(set(data) - FILE_KEYS):
        raise RequestsFileError(
            f"--requests {path}: unknown keys {extra}; write [[request]] tables and `headers`"
        )
    headers = data.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in headers.values()
    ):
        raise RequestsFileError(f'--requests {path}: `headers` must be a table of name = "value"')
    requests = data.get("request", [])
    if not isinstance(requests, list) or (not requests and not headers):
        raise RequestsFileError(f"--requests {path}: no [[request]] table and no `headers`")
    for i, request in enumerate(requests, 1):
        if not isinstance(request, dict) or "path" not in request:
            raise RequestsFileError(f"--requests {path}: request {i} has no `path`")
        if unknown := set(request) - REQUEST_KEYS:
            raise RequestsFileError(
                f"--requests {path}: request {i} has unknown keys {sorted(unknown)}; "
                f"known: {sorted(REQUEST_KEYS)}"
            )
    return RequestsFile(requests, {str(k): str(v) for k, v in headers.items()})


def match_route(
    request: Mapping[str, Any], routes: list[Mapping[str, Any]]
) -> tuple[Mapping[str, Any], dict[str, str]] | None:
    """The route a file's request is for, and the path parameters a concrete path held."""
    method = str(request.get("method", "GET")).upper()
    path = str(request["path"])
    candidates = [r for r in routes if r["method"] == method]
    for route in candidates:
        if route["path"] == path:
            return route, {}
    for route in candidates:
        if found := template_regex(route["path"]).match(path):
            return route, found.groupdict()
    return None


def from_file(
    request: Mapping[str, Any], route: Mapping[str, Any], held: Mapping[str, str], source: str
) -> ProbeRequest:
    """A file's request for `route` (params split into path parameters and the query)."""
    params = dict(request.get("params") or {})
    names = {m.group(1) for m in _PARAM.finditer(route["path"])}
    path_values = {**held, **{k: v for k, v in params.items() if k in names}}
    try:
        path = fill_path(route["path"], path_values)
    except Unfillable as exc:
        raise RequestsFileError(f"{source}: {request['path']}: {exc}") from None
    weight = float(request.get("weight", 1.0))
    if weight <= 0:
        raise RequestsFileError(f"{source}: {request['path']}: weight must be > 0")
    return ProbeRequest(
        label=f"{route['method']} {route['path']}",
        method=route["method"],
        path=path,
        query={k: v for k, v in params.items() if k not in names},
        json=request.get("json"),
        headers={str(k): str(v) for k, v in (request.get("headers") or {}).items()},
        weight=weight,
        source=source,
    )


def with_headers(request: ProbeRequest, headers: Mapping[str, str]) -> ProbeRequest:
    """The request with `headers` under its own (a request's own header wins; names compare
    without case, as HTTP's do)."""
    if not headers:
        return request
    own = {k.lower() for k in request.headers}
    merged = {k: v for k, v in headers.items() if k.lower() not in own}
    return replace(request, headers={**merged, **request.headers})


def plan_requests(
    inventory: Mapping[str, Any],
    requests_file: Path | None = None,
    unsafe: bool = False,
    headers: Mapping[str, str] | None = None,
) -> list[RoutePlan]:
    """One RoutePlan per route of the inventory, in its order. `headers` (`--header`) go with
    every request, over the file's top-level `headers`."""
    routes = list(inventory["routes"])
    document = inventory.get("openapi") or {}
    given: dict[str, list[ProbeRequest]] = {}
    common: dict[str, str] = {}
    if requests_file is not None:
        loaded = load_requests_file(requests_file)
        common.update(loaded.headers)
        for i, request in enumerate(loaded.requests, 1):
            found = match_route(request, routes)
            if found is None:
                method = str(request.get("method", "GET")).upper()
                known = ", ".join(f"{r['method']} {r['path']}" for r in routes)
                raise RequestsFileError(
                    f"--requests {requests_file}: request {i} ({method} {request['path']}) "
                    f"matches no route of the app; its routes: {known}"
                )
            route, held = found
            source = f"{requests_file.name} #{i}"
            given.setdefault(route["id"], []).append(from_file(request, route, held, source))
    cli = {k.lower(): (k, v) for k, v in (headers or {}).items()}  # the last of a name wins
    common = {k: v for k, v in common.items() if k.lower() not in cli} | dict(cli.values())
    plans = []
    for route in routes:
        plan = RoutePlan(route)
        if route["id"] in given:
            plan.requests = given[route["id"]]
        elif route["method"] not in SAFE_METHODS and not unsafe:
            plan.not_probed = (
                "not a safe method (GET, HEAD, OPTIONS), so it may change the app's data: "
                "give its request in --requests (or pass --unsafe)"
            )
        elif inventory.get("openapi_error"):
            plan.not_probed = f"the app's OpenAPI document failed: {inventory['openapi_error']}"
        else:
            try:
                plan.requests = [from_openapi(route, document, common)]
            except Unfillable as exc:
                plan.not_probed = str(exc)
        plan.requests = [with_headers(r, common) for r in plan.requests]
        plans.append(plan)
    return plans


def select_routes(plans: list[RoutePlan], selectors: list[str]) -> list[RoutePlan]:
    """The plans `--routes` names (a path, `METHOD path`, an endpoint name or a route id);
    RequestsFileError-like ValueError for a selector that names none."""
    if not selectors:
        return plans
    chosen: list[RoutePlan] = []
    for selector in selectors:
        text = selector.strip()
        hits = [
            p
            for p in plans
            if text in (p.id, p.route["path"], p.label, p.route.get("name"))
            or text.upper() == p.label.upper()
        ]
        if not hits:
            known = ", ".join(p.label for p in plans)
            raise ValueError(f"--routes {text!r} names no route; the app's routes: {known}")
        chosen += [h for h in hits if h not in chosen]
    return chosen
