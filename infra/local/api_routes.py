"""Which function API Gateway would hand a request to, from template.yaml's own `Api` events.

API Gateway picks the most specific resource (a literal part, then a `{variable}`, then a
`{greedy+}` part), then the resource's own method, else its `ANY`; the local server uses this to
label each request's log lines with the function that would serve it on AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.local.template import load_template

DEFAULT_FUNCTION = "ApiFunction"  # what serves a request no route names (locally the app answers it)


@dataclass(frozen=True)
class ApiRoute:
    function: str
    method: str  # upper case, or "ANY"
    path: str  # "/conversations/{conversation_id}/messages"

    def specificity(self, request_path: str) -> tuple[int, ...] | None:
        """Per part: 2 literal, 1 variable, 0 greedy (compared as a tuple); None if it does not match."""
        parts, segments = _split(self.path), _split(request_path)
        score: list[int] = []
        for index, part in enumerate(parts):
            if part.startswith("{") and part.endswith("+}"):
                return (*score, 0) if index < len(segments) else None
            if index >= len(segments):
                return None
            if part.startswith("{"):
                score.append(1)
            elif part == segments[index]:
                score.append(2)
            else:
                return None
        return tuple(score) if len(parts) == len(segments) else None


class ApiRoutes:
    def __init__(self, routes: list[ApiRoute]) -> None:
        self.routes = routes

    @classmethod
    def from_template(cls, template: dict[str, Any] | None = None) -> ApiRoutes:
        template = template if template is not None else load_template()
        routes = [
            ApiRoute(
                function=name,
                method=str(spec["Properties"]["Method"]).upper(),
                path=spec["Properties"]["Path"],
            )
            for name, resource in template["Resources"].items()
            if resource.get("Type") == "AWS::Serverless::Function"
            for spec in (resource["Properties"].get("Events") or {}).values()
            if spec.get("Type") == "Api"
        ]
        return cls(routes)

    def function_for(self, method: str, path: str) -> str:
        scored = [(score, route) for route in self.routes if (score := route.specificity(path)) is not None]
        if not scored:
            return DEFAULT_FUNCTION
        best = max(score for score, _ in scored)
        here = {route.method: route.function for score, route in scored if score == best}
        return here.get(method.upper()) or here.get("ANY") or DEFAULT_FUNCTION


def _split(path: str) -> list[str]:
    return [part for part in path.strip("/").split("/") if part]
