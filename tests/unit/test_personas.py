"""The persona prompts tell a real model what the grounding check holds it to."""

from __future__ import annotations

import pytest

from shelfwise.chat.personas import load_library

LIBRARY = load_library()


@pytest.mark.parametrize("key", sorted(LIBRARY.personas))
def test_every_persona_asks_for_a_tool_for_every_figure(key: str) -> None:
    prompt = " ".join(LIBRARY.persona(key).system_prompt.split())
    assert "Use a tool for every figure" in prompt
    assert "Do not add up, subtract, count or round" in prompt  # derived figures are unsupported
    assert "If you answer without using a tool, say so" in prompt
    assert "checked against this turn's tool results" in prompt
    assert "point to the inventory API" in prompt
