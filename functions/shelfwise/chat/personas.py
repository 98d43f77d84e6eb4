"""The prompt library: personas composed from markdown fragments (chat/prompts/)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from shelfwise.errors import InvalidInput

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


@dataclass(frozen=True)
class Persona:
    key: str
    description: str
    system_prompt: str


@dataclass(frozen=True)
class PromptLibrary:
    default: str
    personas: dict[str, Persona]
    tasks: dict[str, str]

    def persona(self, key: str | None) -> Persona:
        key = key or self.default
        if key not in self.personas:
            raise InvalidInput(f"unknown prompt_key {key!r}; GET /prompts lists them", field="prompt_key")
        return self.personas[key]

    def task(self, name: str) -> str:
        return self.tasks[name]


def _compose(fragments: list[str], directory: Path) -> str:
    parts = []
    for name in fragments:
        path = directory / "fragments" / f"{name}.md"
        parts.append(path.read_text(encoding="utf-8").strip())
    return "\n\n".join(parts)


def load_library(directory: Path = PROMPTS_DIR) -> PromptLibrary:
    import yaml  # on first use: a cold start that serves no chat does not pay for it (11 ms)

    spec: dict[str, Any] = yaml.safe_load((directory / "personas.yaml").read_text(encoding="utf-8"))
    personas = {
        key: Persona(
            key=key, description=str(p["description"]), system_prompt=_compose(p["fragments"], directory)
        )
        for key, p in spec["personas"].items()
    }
    if spec["default"] not in personas:
        raise ValueError(f"default persona {spec['default']!r} is not defined")
    tasks = {name: _compose(fragments, directory) for name, fragments in spec.get("tasks", {}).items()}
    return PromptLibrary(default=spec["default"], personas=personas, tasks=tasks)


@cache
def library() -> PromptLibrary:
    """The bundled library, read on first use."""
    return load_library()
