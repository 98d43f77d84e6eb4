"""What the offline model says: deterministic answers built from rules, never from a language model.

- chat: a question about stock becomes a call of one of the inventory tools (search_products,
  get_product, list_low_stock, get_inventory_value); once the results come back the answer is built
  from them, with their numbers and their `as_of` time, never an invented one. Anything else gets a
  short canned reply that echoes the question.
- summary (the system message mentions a "running summary"): the topics the user asked about and the
  SKUs that came up, never a quantity or a price.
- title (the system message says "name conversations"): at most six words from the first question;
  in the user's own words when they clearly did not write English.

The server around it is infra/local/offline_model.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from shelfwise.chat import tokens

Task = Literal["chat", "summary", "title"]
SUMMARY_MAX_WORDS = 60
TITLE_MAX_WORDS = 6

# ---------------------------------------------------------------------------------------------------
# Reading what the user wrote


@dataclass(frozen=True)
class Ask:
    """What one piece of user text asks about, as far as simple rules can tell."""

    text: str
    skus: tuple[str, ...] = ()
    product: str | None = None  # a catalog word: "tee", "hoodie", ...
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    low_stock: bool = False
    value: bool = False
    stockish: bool = False  # stock, how many, available, do you have, ...
    price: bool = False

    @property
    def about_inventory(self) -> bool:
        return bool(self.skus or self.low_stock or self.value or (self.product and self.stockish))


_SKU = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2}-\d{4,})(?!\d)")
# (pattern, catalog word): the words of infra/local/demo.py's product names. Earlier patterns win a span.
_PRODUCT_WORDS: list[tuple[str, str]] = [
    (r"t-?shirt[- ]dress(?:es)?|dress(?:es)?|frocks?", "dress"),
    (r"t-?shirts?|tshirts?|tees?", "tee"),
    (r"hoodies?|hoodys?", "hoodie"),
    (r"crew-?necks?|sweatshirts?|sweaters?|jumpers?", "crewneck"),
    (r"overshirts?|flannels?", "overshirt"),
    (r"button-?downs?|oxfords?", "oxford"),
    (r"shirts?", "shirt"),
    (r"rain ?shells?|raincoats?", "shell"),
    (r"jackets?|coats?", "jacket"),
    (r"chinos?", "chino"),
    (r"pants?|trousers?", "pant"),
    (r"swim ?trunks?|trunks?|swimwear", "trunk"),
    (r"shorts?", "short"),
    (r"sneakers?|trainers?|shoes?", "sneaker"),
    (r"boots?", "boot"),
    (r"beanies?|hats?", "beanie"),
    (r"totes?|bags?", "tote"),
    (r"belts?", "belt"),
]
_PRODUCT_PATTERNS = [(re.compile(rf"\b(?:{p})\b", re.IGNORECASE), word) for p, word in _PRODUCT_WORDS]
# fmt: off
_COLORS = [  # the demo catalog's colours, multi-word ones first, and a few common others
    "heather grey", "light blue", "red plaid", "black", "white", "grey", "navy", "olive", "bone",
    "oatmeal", "blue", "sand", "sage", "red", "charcoal", "forest", "green", "cream", "indigo", "khaki",
    "yellow", "brown", "stone", "coral", "rust", "tan", "mustard", "natural", "beige", "pink", "purple",
    "orange",
]
# fmt: on
_COLOR_PATTERN = re.compile(r"\b(" + "|".join(re.escape(c) for c in _COLORS) + r")\b", re.IGNORECASE)
_GRAY = re.compile(r"\bgray\b", re.IGNORECASE)
_SIZE_WORDS = [
    (re.compile(r"\b(?:xx-?large|2xl|double extra large)\b", re.IGNORECASE), "XXL"),
    (re.compile(r"\b(?:extra[- ]?large|x-?large)\b", re.IGNORECASE), "XL"),
    (re.compile(r"\b(?:extra[- ]?small|x-?small)\b", re.IGNORECASE), "XS"),
    (re.compile(r"\bsmall\b", re.IGNORECASE), "S"),
    (re.compile(r"\bmedium\b", re.IGNORECASE), "M"),
    (re.compile(r"\blarge\b", re.IGNORECASE), "L"),
    (re.compile(r"\bone[- ]size\b", re.IGNORECASE), "ONE"),
]
# Case-sensitive: "M" is a size, "m" is not; nor is the M of "I'M" or a SKU's letters.
_SIZE_LETTERS = re.compile(r"(?<![\w'\u2019-])(XXS|XS|S|M|L|XL|XXL|XXXL)(?![\w'\u2019-])")
_SIZE_NAMED = re.compile(r"\b(?:size|sz)\s+([A-Za-z]{1,4}|\d{2}(?:\.5)?)\b", re.IGNORECASE)
_SIZE_NUMBER = re.compile(r"(?<![\w.$-])(2[6-9]|3\d|4[0-8])(?![\w.%-])")
_NUMERIC_SIZED = {"sneaker", "boot", "chino", "pant"}
_LOW_STOCK = re.compile(
    r"low[- ]stock|stock(?:ing)? (?:is )?low|running (?:low|out|short)|run(?:s)? out|reorder|re-order|"
    r"restock|re-stock|short supply|low on|need to order|replenish",
    re.IGNORECASE,
)
_VALUE = re.compile(
    r"inventory value|stock value|value of (?:the |our |all |my )?(?:stock|inventory)|total value|"
    r"\bworth\b|valuation|how much (?:is|does) (?:the |our |all )?(?:stock|inventory)",
    re.IGNORECASE,
)
_STOCKISH = re.compile(
    r"\bstock|how many|available|availability|inventory|do (?:you|we|i) (?:have|carry|stock|sell)|"
    r"\bhave any\b|\bgot any\b|\bleft\b|\bsizes?\b|\bcolou?rs?\b|\bprice|\bcost|\bfind\b|\bshow\b|"
    r"\bsearch|look(?:ing)? (?:up|for)|\bcarry\b|\bsell\b|\bcheck\b|\bquantit|\bon hand\b|\bsold out\b",
    re.IGNORECASE,
)
_PRICE = re.compile(r"\bprice|\bcost|\bexpensive|\bcheap", re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|greetings)\b", re.IGNORECASE
)
_THANKS = re.compile(r"\b(?:thanks|thank you|cheers|thx)\b", re.IGNORECASE)


def _blank(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def parse_ask(text: str) -> Ask:
    skus = tuple(dict.fromkeys(m.group(1).upper() for m in _SKU.finditer(text)))
    rest = _SKU.sub(" ", text)
    found: list[tuple[int, str]] = []
    for pattern, word in _PRODUCT_PATTERNS:
        for match in pattern.finditer(rest):
            found.append((match.start(), word))
            rest = _blank(rest, match)
    product = min(found)[1] if found else None
    colors = tuple(
        dict.fromkeys(m.group(1).lower() for m in _COLOR_PATTERN.finditer(_GRAY.sub("grey", rest)))
    )
    sizes: list[str] = []
    for pattern, size in _SIZE_WORDS:
        for match in pattern.finditer(rest):
            sizes.append(size)
            rest = _blank(rest, match)
    for match in _SIZE_NAMED.finditer(rest):
        sizes.append(match.group(1).upper())
        rest = _blank(rest, match)
    sizes.extend(m.group(1) for m in _SIZE_LETTERS.finditer(rest))
    if product in _NUMERIC_SIZED:
        sizes.extend(m.group(1) for m in _SIZE_NUMBER.finditer(rest))
    return Ask(
        text=text,
        skus=skus,
        product=product,
        colors=colors,
        sizes=tuple(dict.fromkeys(sizes)),
        low_stock=bool(_LOW_STOCK.search(text)),
        value=bool(_VALUE.search(text)),
        stockish=bool(_STOCKISH.search(text)),
        price=bool(_PRICE.search(text)),
    )


# fmt: off
_ENGLISH = frozenset({
    "the", "a", "an", "is", "are", "do", "does", "we", "you", "i", "have", "has", "how", "many", "much",
    "what", "which", "in", "of", "to", "for", "any", "can", "it", "there", "stock", "left", "show", "me",
    "please", "size", "and", "with", "my", "our", "running", "low", "tell", "about", "hello", "hi", "thanks",
})
_NOT_ENGLISH = frozenset({  # es, de, fr, it, pt, nl: short words that give a language away
    "el", "la", "los", "las", "del", "hay", "cuántas", "cuántos", "cuantas", "cuantos", "tienen",
    "tenemos", "qué", "que", "por", "para", "una", "y", "con",
    "der", "die", "das", "und", "ist", "wie", "viele", "haben", "wir", "noch", "gibt", "es", "im",
    "lager", "auf", "ein", "eine", "nicht", "sind",
    "le", "les", "des", "est", "combien", "avons", "nous", "du", "une", "et", "dans", "sont", "reste",
    "il", "gli", "quanti", "quante", "abbiamo", "ci", "sono", "di", "della",
    "quantas", "quantos", "temos", "tem", "não", "em", "estoque", "da",
    "hoeveel", "hebben", "nog", "het", "een", "op", "voorraad",
})
# fmt: on


def is_clearly_not_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    if sum(1 for c in letters if ord(c) > 0x24F) > len(letters) * 0.3:  # mostly a non-Latin script
        return True
    words = set(re.findall(r"[^\W\d_]+", text.lower()))
    return len(words & _NOT_ENGLISH) > len(words & _ENGLISH)


# ---------------------------------------------------------------------------------------------------
# Reading the request


def message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def detect_task(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None) -> Task:
    """From the system (or developer) messages. A request that offers tools is always a chat turn."""
    if tools:
        return "chat"
    system = " ".join(
        message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    ).lower()
    if "running summary" in system:
        return "summary"
    if "name conversations" in system:
        return "title"
    return "chat"


_LABEL = re.compile(
    r"^\s*(?:[-*]\s*)?[*_\[(]*(user|human|customer|staff|employee|associate|assistant|ai|model|bot|tool)"
    r"[*_\])]*\s*(?:\([^)]*\))?\s*[:>]\s*(.*)$",
    re.IGNORECASE,
)
_SUMMARY_SO_FAR = re.compile(
    r"^\s*(?:the )?(?:summary so far|previous summary|current summary|running summary)\b",
    re.IGNORECASE | re.MULTILINE,
)
_USER_LABELS = {"user", "human", "customer", "staff", "employee", "associate"}


@dataclass
class Transcript:
    """The conversation a summary or title request carries: as real messages, or as labelled lines
    ("user: ...", "assistant: ...") inside one message, or both."""

    user_turns: list[str] = field(default_factory=list)
    other_text: list[str] = field(default_factory=list)  # e.g. "Summary so far: ..." preambles
    all_text: list[str] = field(default_factory=list)


def read_transcript(messages: Sequence[Mapping[str, Any]]) -> Transcript:
    transcript = Transcript()
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            continue
        text = message_text(message.get("content"))
        transcript.all_text.append(text)
        if role != "user":
            continue
        lines = text.splitlines()
        if not any(_LABEL.match(line) for line in lines):
            if _SUMMARY_SO_FAR.search(text):  # only an earlier summary, nothing new to fold in
                transcript.other_text.extend(line.strip() for line in lines if line.strip())
            else:
                transcript.user_turns.append(text.strip())
            continue
        speaker: str | None = None  # None: before the first label (e.g. "Summary so far: ...")
        for line in lines:
            label = _LABEL.match(line)
            if label:
                speaker = "user" if label.group(1).lower() in _USER_LABELS else "other"
                if speaker == "user":
                    transcript.user_turns.append(label.group(2))
            elif speaker == "user":
                transcript.user_turns[-1] += "\n" + line
            elif speaker is None and line.strip():
                transcript.other_text.append(line.strip())
            # lines of the assistant's (or a tool's) turn are not what the user asked
    transcript.user_turns = [turn.strip() for turn in transcript.user_turns if turn.strip()]
    return transcript


# ---------------------------------------------------------------------------------------------------
# Deciding what to say


@dataclass
class PlannedCall:
    name: str
    arguments: str  # JSON text, as the model emits it
    id: str = ""


@dataclass
class Plan:
    content: str | None = None
    tool_calls: list[PlannedCall] = field(default_factory=list)
    finish_reason: str = "stop"

    @property
    def completion_tokens(self) -> int:
        return tokens.count_text(self.content or "") + sum(
            tokens.count_text(c.name) + tokens.count_text(c.arguments) for c in self.tool_calls
        )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _call_key(name: str, arguments: str) -> str:
    try:
        return name + json.dumps(json.loads(arguments or "{}"), sort_keys=True)
    except ValueError:
        return name + arguments


def calls_for(ask: Ask) -> list[list[tuple[str, dict[str, Any]]]]:
    """The tool calls a question needs, in rounds: calls of one round go out together."""
    first: list[tuple[str, dict[str, Any]]] = []
    if ask.skus:
        first = [("get_product", {"sku": sku}) for sku in ask.skus[:3]]
    elif ask.low_stock:
        first = [("list_low_stock", {"limit": 10})]
    elif ask.product and (ask.stockish or ask.sizes or ask.colors):
        first = [("search_products", {"query": ask.product})]
    rounds = [first] if first else []
    if ask.value:
        rounds.append([("get_inventory_value", {})])
    return rounds


def tool_names(tools: Sequence[Mapping[str, Any]] | None) -> list[str]:
    names = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            names.append(name)
    return names


def _forced_tool(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def _default_arguments(name: str, ask: Ask) -> dict[str, Any]:
    match name:
        case "get_product":
            return {"sku": ask.skus[0] if ask.skus else ""}
        case "list_low_stock":
            return {"limit": 10}
        case "search_products":
            return {"query": ask.product or " ".join(ask.text.split()[:4])}
        case _:
            return {}


def plan_chat(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None, tool_choice: Any
) -> Plan:
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        return Plan(content=_reply(Ask(text=""), tools_offered=bool(tools)))
    ask = _follow_up(parse_ask(message_text(messages[last_user].get("content"))), messages[:last_user])
    turn = messages[last_user + 1 :]
    available = tool_names(tools)
    if available and tool_choice != "none":
        made = {
            _call_key(
                str(call.get("function", {}).get("name")), str(call.get("function", {}).get("arguments"))
            )
            for m in turn
            if m.get("role") == "assistant"
            for call in m.get("tool_calls") or ()
            if isinstance(call, dict)
        }
        forced = _forced_tool(tool_choice)
        wanted = [
            [
                (name, args)
                for name, args in round_
                if name in available and (forced is None or name == forced)
            ]
            for round_ in calls_for(ask)
        ]
        for round_ in wanted:
            pending = [(n, a) for n, a in round_ if _call_key(n, _json(a)) not in made]
            if pending:
                return Plan(
                    tool_calls=[PlannedCall(n, _json(a)) for n, a in pending], finish_reason="tool_calls"
                )
        if not made and (forced or tool_choice == "required"):
            name = forced if forced and forced in available else available[0]
            return Plan(
                tool_calls=[PlannedCall(name, _json(_default_arguments(name, ask)))],
                finish_reason="tool_calls",
            )
    results = _tool_results(turn)
    if results:
        return Plan(content="\n\n".join(_answer(name, result, ask) for name, result in results))
    return Plan(content=_reply(ask, tools_offered=bool(available) and tool_choice != "none"))


def _follow_up(ask: Ask, earlier: Sequence[Mapping[str, Any]]) -> Ask:
    """ "and in white?" after "black tees in M?": the product (and what is not said again) carries over."""
    if ask.product or ask.skus or ask.low_stock or ask.value or not (ask.colors or ask.sizes):
        return ask
    for message in reversed(earlier):
        if message.get("role") == "user":
            before = parse_ask(message_text(message.get("content")))
            if before.product:
                return replace(
                    ask,
                    product=before.product,
                    colors=ask.colors or before.colors,
                    sizes=ask.sizes or before.sizes,
                    stockish=True,
                )
    return ask


def _tool_results(turn: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """(tool name, parsed result) for each tool message of this turn, oldest first."""
    names: dict[str, str] = {}
    results: list[tuple[str, Any]] = []
    for message in turn:
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict):
                    names[str(call.get("id"))] = str(call.get("function", {}).get("name"))
        elif message.get("role") == "tool":
            text = message_text(message.get("content"))
            try:
                result: Any = json.loads(text)
            except ValueError:
                result = {"error": "the tool returned something that is not JSON"}
            name = names.get(str(message.get("tool_call_id"))) or _guess_tool(result)
            results.append((name, result))
    return results


def _guess_tool(result: Any) -> str:
    if isinstance(result, dict):
        for key, name in (
            ("products", "search_products"),
            ("product", "get_product"),
            ("items", "list_low_stock"),
            ("by_category", "get_inventory_value"),
        ):
            if key in result:
                return name
    return "unknown"


def _as_of(result: Mapping[str, Any]) -> str:
    raw = result.get("as_of")
    if not isinstance(raw, str) or not raw:
        return "just now"
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return f"as of {raw}"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"as of {moment.astimezone(UTC):%H:%M} UTC"


def _plural(word: str) -> str:
    return word if word.endswith("s") else (word + "es" if word.endswith(("sh", "ch", "x")) else word + "s")


def _number(value: Any, *, money: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,.2f}" if money else f"{value:,}"


def _color_matches(color: Any, wanted: Sequence[str]) -> bool:
    text = str(color or "").lower().replace("gray", "grey")
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in wanted)


def _product_label(product: Mapping[str, Any], *, with_color: bool = True) -> str:
    name = str(product.get("name") or "a product")
    color = product.get("color")
    label = f"{name} in {color}" if with_color and color else name
    return f"{label} ({product.get('sku')})" if product.get("sku") else label


def _variants(product: Mapping[str, Any], sizes: Sequence[str]) -> list[Mapping[str, Any]]:
    variants: list[Mapping[str, Any]] = [v for v in product.get("variants") or () if isinstance(v, dict)]
    if sizes:
        variants = [v for v in variants if str(v.get("size", "")).upper() in sizes]
    return variants


def _stock_list(variants: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{v.get('size')} {_number(v.get('quantity'))}" for v in variants)


def _describe_wanted(ask: Ask, fallback: str) -> str:
    words = [*ask.colors, _plural(ask.product) if ask.product else fallback]
    wanted = " ".join(words)
    if ask.sizes:
        wanted += f" in size {' or '.join(ask.sizes)}"
    return wanted


def _answer_products(products: Sequence[Mapping[str, Any]], result: Mapping[str, Any], ask: Ask) -> str:
    when = _as_of(result)
    matching = [p for p in products if not ask.colors or _color_matches(p.get("color"), ask.colors)]
    matching = [p for p in matching if _variants(p, ask.sizes) or not ask.sizes]
    if not matching:
        return f"I found no {_describe_wanted(ask, 'products')} in the catalog ({when})."
    notes: list[str] = []
    if len(matching) == 1:
        product = matching[0]
        variants = _variants(product, ask.sizes)
        if len(variants) == 1:
            variant = variants[0]
            quantity = variant.get("quantity")
            name, color, sku = product.get("name"), product.get("color"), product.get("sku")
            label = f"{name} in {color}, size {variant.get('size')} ({sku})"
            if quantity == 0:
                text = f"{label} is out of stock, {when}."
            else:
                text = f"We have {_number(quantity)} {label} in stock, {when}."
        elif variants:
            text = f"{_product_label(product)}, {when}: {_stock_list(variants)} in stock."
        else:
            text = f"{_product_label(product)} has no sizes set up yet ({when})."
        if ask.price and product.get("price") is not None:
            notes.append(f"It is priced at {_number(product.get('price'), money=True)}.")
        if product.get("coming_soon"):
            notes.append("It is marked as coming soon.")
        return " ".join([text, *notes])
    lines = [f"Here is what I found, {when}:"]
    for product in matching[:6]:
        variants = _variants(product, ask.sizes)
        stock = _stock_list(variants) if variants else "no sizes set up"
        extra = f", priced at {_number(product.get('price'), money=True)}" if ask.price else ""
        soon = " (coming soon)" if product.get("coming_soon") else ""
        lines.append(f"- {_product_label(product)}{soon}: {stock}{extra}")
    if len(matching) > 6:
        lines.append(f"...and {len(matching) - 6} more; tell me a colour or size to narrow it down.")
    return "\n".join(lines)


def _answer(name: str, result: Any, ask: Ask) -> str:
    if not isinstance(result, dict):
        return "The lookup returned something I could not read."
    when = _as_of(result)
    if result.get("error"):
        return f"I could not look that up: {result['error']} ({when})."
    if name == "unknown":
        name = _guess_tool(result)
    if name == "search_products":
        products = [p for p in result.get("products") or () if isinstance(p, dict)]
        text = _answer_products(products, result, ask)
        if result.get("more"):
            text += "\nThere are more matches; a more specific question narrows them down."
        return text
    if name == "get_product":
        product = result.get("product")
        if not isinstance(product, dict):
            return f"I could not find that product ({when})."
        return _answer_products([product], result, _without_colors(ask))
    if name == "list_low_stock":
        items = [i for i in result.get("items") or () if isinstance(i, dict)]
        if ask.product:
            of_product = [i for i in items if ask.product in str(i.get("name", "")).lower()]
            items = of_product or items
        if not items:
            return f"Nothing is at or below its reorder level, {when}."
        lines = [f"These are at or below their reorder level, {when}:"]
        for item in items[:10]:
            lines.append(
                f"- {item.get('name') or 'Product'} ({item.get('sku')}) size {item.get('size')}: "
                f"{_number(item.get('quantity'))} in stock, "
                f"reorder level {_number(item.get('reorder_level'))}"
            )
        if len(items) > 10 or result.get("more"):
            lines.append("...and more.")
        return "\n".join(lines)
    if name == "get_inventory_value":
        currency = result.get("currency") or ""
        text = (
            f"{when.capitalize()} the stock on hand is {_number(result.get('units'))} units "
            f"worth {_number(result.get('value'), money=True)} {currency}".rstrip()
            + "."
        )
        categories = [c for c in result.get("by_category") or () if isinstance(c, dict)]
        categories.sort(key=lambda c: -float(c.get("value") or 0))
        if categories:
            top = ", ".join(
                f"{c.get('category')} {_number(c.get('value'), money=True)}" for c in categories[:3]
            )
            text += f" The largest categories by value: {top}."
        return text
    return f"The {name} tool answered, but I do not know how to read its result ({when})."


def _without_colors(ask: Ask) -> Ask:
    """A product asked for by SKU: its colour is the SKU's, whatever colour words the question had."""
    return Ask(text=ask.text, skus=ask.skus, product=ask.product, sizes=ask.sizes, price=ask.price)


def _quote(text: str, max_words: int = 20) -> str:
    words = text.replace('"', "'").split()
    quoted = " ".join(words[:max_words])
    return quoted + ("..." if len(words) > max_words else "")


def _reply(ask: Ask, *, tools_offered: bool) -> str:
    if not ask.text.strip():
        return "Hello! I am the offline stand-in model. Ask me about stock, sizes or what is running low."
    if ask.about_inventory and not tools_offered:
        return (
            f'You asked: "{_quote(ask.text)}". I have no inventory tools in this conversation, so I '
            "cannot read the live stock, and I will not guess numbers. Please try again in a moment."
        )
    if (ask.stockish or ask.sizes or ask.colors) and not ask.product and tools_offered:
        return (
            f'You asked: "{_quote(ask.text)}". Which product do you mean? Tell me a product name, '
            "a colour and a size, or a SKU like TE-0001, and I will check the live stock."
        )
    if _THANKS.search(ask.text):
        return "You're welcome! Ask me anytime about stock levels, sizes or what needs reordering."
    opening = "Hello! " if _GREETING.match(ask.text) else ""
    return (
        f'{opening}You said: "{_quote(ask.text)}". I am the offline stand-in model of shelfwise, so my '
        "answers are canned rather than thought through. I can still look up live stock for you: "
        "ask me how many medium black tees are in stock, what is running low, or what the inventory "
        "is worth."
    )


_NUMBERS = re.compile(r"\$?\d[\d,.]*")
_QUOTED = re.compile(r'("[^"]{1,80}")')
_SKUS_SENTENCE = re.compile(r"SKUs mentioned:[^.]*\.?")
_CLAUSES = re.compile(r"[,;.]|\band\b")


def _topics(ask: Ask) -> list[str]:
    topics: list[str] = []
    if ask.skus:
        products = f"product {ask.skus[0]}" if len(ask.skus) == 1 else f"products {_join(ask.skus)}"
        topics.append(products + (f" in size {' or '.join(ask.sizes)}" if ask.sizes else ""))
    if ask.low_stock:
        topics.append(f"{_plural(ask.product)} running low" if ask.product else "items running low")
    if ask.value:
        topics.append("the total inventory value")
    if ask.product and not ask.skus and not ask.low_stock:
        what = "prices of" if ask.price else "stock of"
        topics.append(f"{what} {_describe_wanted(ask, 'products')}")
    return topics


def plan_summary(messages: Sequence[Mapping[str, Any]]) -> Plan:
    """A short summary: what the user asked about and which SKUs came up. Never a quantity or price:
    the numbers in the conversation are deliberately left out (they go stale)."""
    transcript = read_transcript(messages)
    topics: list[str] = []
    for text in transcript.other_text:  # an earlier summary: keep its topics, clause by clause
        for part in _QUOTED.split(_SKUS_SENTENCE.sub(" ", text)):
            if part.startswith('"'):
                topics.append(part)
            else:
                topics.extend(t for clause in _CLAUSES.split(part) for t in _topics(parse_ask(clause)))
    for turn in transcript.user_turns:
        ask = parse_ask(turn)
        found = _topics(ask)
        if not found and not _THANKS.search(turn) and not re.fullmatch(r"\W*\w+\W*", turn):
            general = _NUMBERS.sub("", " ".join(turn.split()[:8])).replace('"', "'")
            found = [f'"{" ".join(general.split())}"']
        topics.extend(found)
    topics = list(dict.fromkeys(t for t in topics if t.strip('"').strip()))
    skus = list(
        dict.fromkeys(m.group(1).upper() for text in transcript.all_text for m in _SKU.finditer(text))
    )
    if not topics and not skus:
        return Plan(content="The user has not asked about anything specific yet.")
    parts: list[str] = []
    if topics:
        parts.append(f"The user asked about {_join(topics)}.")
    if skus:
        parts.append(f"SKUs mentioned: {', '.join(skus[:6])}.")
    parts.append("Stock figures were looked up live and are not repeated here.")
    return Plan(content=_limit_words(" ".join(parts), SUMMARY_MAX_WORDS))


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _limit_words(text: str, max_words: int) -> str:
    words = text.split(" ")
    if len(words) <= max_words:
        return text
    return " ".join(words[:max_words]).rstrip(",;:") + "..."


def plan_title(messages: Sequence[Mapping[str, Any]]) -> Plan:
    """At most six words, no quotes, no trailing punctuation; in the user's own words when the user
    clearly did not write English."""
    transcript = read_transcript(messages)
    first = transcript.user_turns[0] if transcript.user_turns else ""
    return Plan(content=make_title(first))


def make_title(text: str) -> str:
    ask = parse_ask(text)
    if not is_clearly_not_english(text):
        title = ""
        if ask.skus:
            title = f"{ask.skus[0]} stock check"
        elif ask.low_stock:
            title = f"Low stock {_plural(ask.product)}" if ask.product else "Low stock review"
        elif ask.value:
            title = "Inventory value check"
        elif ask.product:
            color = ask.colors[0] if ask.colors else ""
            title = f"{color} {ask.product} {'price' if ask.price else 'stock'} check".strip()
        if title:
            return _clean_title(title[0].upper() + title[1:])
    words = _QUOTES.sub("", text).split()
    if len(words) == 1 and len(words[0]) > 24:  # a script without spaces
        words = [words[0][:16]]
    title = _clean_title(" ".join(words[:TITLE_MAX_WORDS]))
    if not title:
        return "New conversation"
    return title[0].upper() + title[1:]


# Quotation marks (and Spanish opening marks); an apostrophe inside a word ("what's") stays.
_QUOTES = re.compile(
    "[\"`\u201c\u201d\u201e\u00ab\u00bb\u00bf\u00a1]|(?<!\\w)['\u2018\u2019]|['\u2018\u2019](?!\\w)"
)
_TRAILING = " .,;:!?-\u2026\u3001\u3002\uff01\uff1f"  # ... and the CJK comma, full stop, ! and ?


def _clean_title(title: str) -> str:
    title = " ".join(_QUOTES.sub("", title).split()[:TITLE_MAX_WORDS])
    return title.rstrip(_TRAILING)


def respond(
    task: Task,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
) -> Plan:
    """What the model says to a request of `task` (see detect_task)."""
    match task:
        case "summary":
            return plan_summary(messages)
        case "title":
            return plan_title(messages)
        case _:
            return plan_chat(messages, tools, tool_choice)


def limit(plan: Plan, max_tokens: int | None) -> Plan:
    """Honour max_completion_tokens / max_tokens: cut the output and finish with "length"."""
    if max_tokens is None or plan.completion_tokens <= max_tokens:
        return plan
    if plan.tool_calls:
        budget = max_tokens
        calls: list[PlannedCall] = []
        for call in plan.tool_calls:
            budget -= tokens.count_text(call.name)
            if budget < 0:
                break
            arguments = tokens.truncate_text(call.arguments, budget)
            calls.append(PlannedCall(call.name, arguments, call.id))
            budget -= tokens.count_text(arguments)
        return Plan(tool_calls=calls, finish_reason="length")
    return Plan(content=tokens.truncate_text(plan.content or "", max_tokens), finish_reason="length")
