"""What the offline model says: deterministic answers built from rules, never from a language model.

- chat: a question about stock becomes a call of one of the inventory tools (search_products by
  category or by name, get_product, list_low_stock, get_inventory_value); once the results come back
  the answer is built from them, with their numbers and their `as_of` time. It states no figure a
  tool did not return: no sums, differences or counts of its own (the tools report the totals and
  counts it repeats), and a list is shown whole or said to be cut, with how many there are.
  Generic questions get the tool that answers them: out of stock and low stock (the low-stock list,
  or a category's products), totals and comparisons between categories (the inventory value by
  category). A request to change stock is refused, pointing to the inventory API. Anything it does
  not understand is said to be so, with what it can answer, never answered as something else. It
  reads English, and the product, colour, size and stock words of Spanish, German and French; it
  answers in English.
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
    products: tuple[str, ...] = ()  # every catalog word, in the order written
    out_of_stock: bool = False
    how_many: bool = False
    totals: bool = False  # units, products or stock in total
    compare: bool = False  # compare, versus, which category
    write: bool = False  # asks to change stock or products

    @property
    def about_inventory(self) -> bool:
        return bool(
            self.skus
            or self.low_stock
            or self.out_of_stock
            or self.value
            or self.totals
            or self.compare
            or (self.product and (self.stockish or self.price))
        )

    @property
    def category(self) -> str | None:
        """The catalog category its product word names (a category word, or the category of a name
        word: "sneaker" is footwear)."""
        return CATEGORY_OF.get(self.product) if self.product else None


_SKU = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2}-\d{4,})(?!\d)")
# (pattern, catalog word): the words of infra/local/demo.py's product names and categories, in
# English, Spanish, German and French. Earlier patterns win a span.
_PRODUCT_WORDS: list[tuple[str, str]] = [
    (r"t-?shirt[- ]dress(?:es)?|dress(?:es)?|frocks?|vestidos?|kleid(?:er)?|robes?", "dress"),
    (r"t-?shirts?|tshirts?|tees?|camisetas?", "tee"),
    (
        r"hoodies?|hoodys?|sudaderas?(?: con capucha)?|kapuzenpull(?:over|is?)|"
        r"sweats? (?:à|a) capuche|sweat-?shirts? (?:à|a) capuche",
        "hoodie",
    ),
    (r"crew-?necks?|sweatshirts?|sweaters?|jumpers?|pullover", "crewneck"),
    (r"overshirts?|flannels?", "overshirt"),
    (r"button-?downs?|oxfords?", "oxford"),
    (r"shirts?|camisas?|hemd(?:en)?|chemises?", "shirt"),
    (r"rain ?shells?|raincoats?", "shell"),
    (r"jackets?|coats?|chaquetas?|chamarras?|abrigos?|jacken?|m(?:a|ä)ntel|vestes?|manteaux?", "jacket"),
    (r"chinos?", "chino"),
    (r"swim ?trunks?|trunks?|swimwear|ba(?:ñ|n)adores?", "trunk"),
    (r"shorts?|pantalones cortos|kurze hosen?", "short"),
    (r"pants?|trousers?|pantal(?:o|ó)n(?:es)?|pantalons?|hosen?", "pant"),
    (r"sneakers?|trainers?|zapatillas?|turnschuhe?|baskets", "sneaker"),
    (r"boots?|botas?|stiefel|bottes?", "boot"),
    (r"shoes?|footwear|zapatos?|schuhe|chaussures?", "footwear"),
    (r"beanies?|hats?|gorros?|m(?:ü|u)tzen?|bonnets?", "beanie"),
    (r"totes?|bags?|bolsas?|taschen?|sacs?", "tote"),
    (r"belts?|cintur(?:o|ó)n(?:es)?|g(?:ü|u)rtel|ceintures?", "belt"),
    (r"accessories|accesorios|zubeh(?:ö|o)r|accessoires", "accessory"),
]
# The category each catalog word belongs to (shelfwise.inventory.models.Category's values). A word
# that names a whole category is searched by category, so that "hoodies" finds the Fleece Crewneck
# too; any other word is searched by name.
CATEGORY_OF: dict[str, str] = {
    "tee": "tees",
    "shirt": "shirts",
    "overshirt": "shirts",
    "oxford": "shirts",
    "hoodie": "hoodies",
    "crewneck": "hoodies",
    "jacket": "jackets",
    "shell": "jackets",
    "pant": "pants",
    "chino": "pants",
    "short": "shorts",
    "trunk": "shorts",
    "dress": "dresses",
    "sneaker": "footwear",
    "boot": "footwear",
    "footwear": "footwear",
    "beanie": "accessories",
    "tote": "accessories",
    "belt": "accessories",
    "accessory": "accessories",
}
CATEGORY_WORDS = frozenset(
    {"tee", "shirt", "hoodie", "jacket", "pant", "short", "dress", "footwear", "accessory"}
)
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
_COLOR_WORDS = [  # Spanish, German and French colour words -> the catalog's
    (r"negr[oa]s?|schwarz(?:e[nrs]?)?|noir(?:e|s|es)?", "black"),
    (r"blanc(?:o|a|os|as|he|s|hes)?|wei(?:ß|ss)(?:e[nrs]?)?", "white"),
    (r"azul marino|marineblau(?:e[nrs]?)?|bleu marine", "navy"),
    (r"gris(?:es)?|grau(?:e[nrs]?)?", "grey"),
    (r"amarill[oa]s?|gelb(?:e[nrs]?)?|jaune?s?", "yellow"),
    (r"marr(?:ó|o)n(?:es)?|braun(?:e[nrs]?)?|marron", "brown"),
]
_COLOR_WORD_PATTERNS = [(re.compile(rf"\b(?:{p})\b", re.IGNORECASE), color) for p, color in _COLOR_WORDS]
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
_SIZE_NAMED = re.compile(
    r"\b(?:size|sz|talla|gr(?:ö|oe|o)(?:ß|ss)e|taille|taglia|tamanho|maat)\s+([A-Za-z]{1,4}|\d{2}(?:\.5)?)\b",
    re.IGNORECASE,
)
_SIZE_NUMBER = re.compile(r"(?<![\w.$-])(2[6-9]|3\d|4[0-8])(?![\w.%-])")
_NUMERIC_SIZED = {"sneaker", "boot", "chino", "pant", "footwear"}
_LOW_STOCK = re.compile(
    r"low[- ]stock|stock(?:ing)? (?:is )?low|running (?:low|out|short)|run(?:s)? out|reorder|re-order|"
    r"restock|re-stock|short supply|low on|need to order|replenish|"
    r"poco stock|bajo stock|stock bajo|pocas existencias|casi agotad|reponer|"
    r"wenig(?:e[nr]?)? (?:bestand|lager)|niedrige[nr]? (?:bestand|lagerbestand)|fast ausverkauft|nachbestell|"
    r"stock faible|faible stock|presque (?:é|e)puis|bient(?:ô|o)t (?:é|e)puis|r(?:é|e)approvisionn",
    re.IGNORECASE,
)
_OUT_OF_STOCK = re.compile(
    r"out of stock|sold out|none left|no stock|agotad[oa]s?|sin (?:stock|existencias)|ausverkauft|"
    r"nicht (?:mehr )?(?:auf lager|vorr(?:ä|a)tig|lieferbar)|rupture de stock|en rupture|"
    r"(?:é|e)puis(?:é|e)s?",
    re.IGNORECASE,
)
_VALUE = re.compile(
    r"inventory value|stock value|value of (?:the |our |all |my )?(?:stock|inventory)|total value|"
    r"\bworth\b|valuation|how much (?:is|does) (?:the |our |all )?(?:stock|inventory)|most valuable|"
    r"valor (?:total )?del (?:inventario|stock)|valor total|gesamtwert|lagerwert|wert des (?:lagers|bestand)|"
    r"valeur (?:totale )?(?:du stock|de l.inventaire)|valeur totale",
    re.IGNORECASE,
)
_HOW_MANY = re.compile(r"how many|how much stock|cu(?:á|a)nt[oa]s|wie ?viele|combien", re.IGNORECASE)
_TOTALS = re.compile(
    r"\bin total\b|\baltogether\b|\boverall\b|\btotal (?:units|stock|number|quantity)|"
    r"how many (?:units|items|pieces|products|variants|skus)|\ben total\b|\binsgesamt\b|\bau total\b|"
    r"cu(?:á|a)ntos productos|wie viele (?:produkte|artikel)|combien de produits",
    re.IGNORECASE,
)
_COMPARE = re.compile(
    r"\bcompar(?:e|ing|ison|a|ar|er)\b|\bvs\.?(?!\w)|\bversus\b|\bvergleich|"
    r"\b(?:which|what) categor|\bby category|\bper category|\bcategor(?:y|ies|(?:í|i)as?|ie|ien)\b",
    re.IGNORECASE,
)
# A request to change something: an imperative (or "can you ...") at the start of the message.
_WRITE = re.compile(
    r"^\W*(?:(?:please|pls|kindly|por favor|bitte|s'il (?:te|vous) pla(?:î|i)t)[\s,]+)?"
    r"(?:(?:can|could|would|will) you (?:please )?|i (?:want|need|would like) (?:you )?to |let'?s )?"
    r"(?:set|change|update|add|remove|delete|increase|decrease|reduce|adjust|record|mark|put|restock|"
    r"move|transfer|sell|edit|modify|rename|create|"
    r"cambia|cambiar|actualiza|a(?:ñ|n)ade|agrega|elimina|borra|pon|sube|baja|ajusta|registra|"
    r"setze?|(?:ä|a)ndere?|aktualisiere|f(?:ü|u)ge|l(?:ö|o)sche|erh(?:ö|o)he|verringere|buche|trage|"
    r"changez|modifiez?|mets|mettez|ajoutez?|supprimez?|augmentez?|diminuez?|retirez?)\b",
    re.IGNORECASE,
)
_STOCKISH = re.compile(
    r"\bstock|how many|available|availability|inventory|do (?:you|we|i) (?:have|carry|stock|sell)|"
    r"\bhave any\b|\bgot any\b|\bleft\b|\bsizes?\b|\bcolou?rs?\b|\bprice|\bcost|\bfind\b|\bshow\b|"
    r"\bsearch|look(?:ing)? (?:up|for)|\bcarry\b|\bsell\b|\bcheck\b|\bquantit|\bon hand\b|\bsold out\b|"
    r"\blist\b|\ball\b|\bany\b|"
    r"cu(?:á|a)nt[oa]s|tenemos|tienen|hay\b|existencias|inventario|"
    r"wie ?viele|haben wir|gibt es|bestand|lager|"
    r"combien|avons|avez|reste|inventaire",
    re.IGNORECASE,
)
_PRICE = re.compile(
    r"\bprice|\bcost|\bexpensive|\bcheap|"
    r"how much (?:is|are|does|do)\b(?! (?:the |our |all )?(?:stock|inventory))|"
    r"\bprecio|\bpreis|\bprix|cu(?:á|a)nto cuesta|wie viel kostet|combien co(?:û|u)te",
    re.IGNORECASE,
)
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
    found.sort()
    product = found[0][1] if found else None
    named_colors = [(m.start(), m.group(1).lower()) for m in _COLOR_PATTERN.finditer(_GRAY.sub("grey", rest))]
    named_colors += [
        (m.start(), color) for pattern, color in _COLOR_WORD_PATTERNS for m in pattern.finditer(rest)
    ]
    colors = tuple(dict.fromkeys(color for _, color in sorted(named_colors)))
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
    low_stock = bool(_LOW_STOCK.search(text))
    return Ask(
        text=text,
        skus=skus,
        product=product,
        colors=colors,
        sizes=tuple(dict.fromkeys(sizes)),
        low_stock=low_stock,
        value=bool(_VALUE.search(text)),
        stockish=bool(_STOCKISH.search(text)),
        price=bool(_PRICE.search(text)),
        products=tuple(dict.fromkeys(word for _, word in found)),
        out_of_stock=bool(_OUT_OF_STOCK.search(text)) and not low_stock,
        how_many=bool(_HOW_MANY.search(text)),
        totals=bool(_TOTALS.search(text)),
        compare=bool(_COMPARE.search(text)),
        write=bool(_WRITE.search(text)),
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


LOW_STOCK_LIMIT = 50  # list_low_stock's most: the answer says how many it read, and if there are more
LOW_STOCK_SHOWN = 10  # lines of a low-stock answer (the largest shortfalls); the rest are said to exist


def search_arguments(word: str) -> dict[str, Any]:
    """A catalog word's search: a whole category by category (its products whatever their names),
    any other word by name."""
    if word in CATEGORY_WORDS:
        return {"query": "", "category": CATEGORY_OF[word]}
    return {"query": word}


def by_category(ask: Ask) -> bool:
    """Answered from the inventory value by category: a comparison, a question about categories, or
    "how many X" of whole categories without a colour or size."""
    words = ask.products
    if not words or not all(w in CATEGORY_WORDS for w in words):
        return ask.compare and not words  # "which category is worth the most?"
    if ask.compare:
        return True
    narrowed = ask.colors or ask.sizes or ask.price or ask.low_stock or ask.out_of_stock
    return ask.how_many and not narrowed


def calls_for(ask: Ask) -> list[list[tuple[str, dict[str, Any]]]]:
    """The tool calls a question needs, in rounds: calls of one round go out together. A request to
    change something needs none (it is refused)."""
    if ask.write:
        return []
    first: list[tuple[str, dict[str, Any]]] = []
    value = ask.value or ask.totals
    if ask.skus:
        first = [("get_product", {"sku": sku}) for sku in ask.skus[:3]]
    elif by_category(ask):
        value = True
    elif ask.products and (ask.low_stock or ask.out_of_stock):
        first = [("search_products", search_arguments(w)) for w in ask.products[:3]]
    elif ask.low_stock or ask.out_of_stock:
        first = [("list_low_stock", {"limit": LOW_STOCK_LIMIT})]
    elif ask.products and (ask.stockish or ask.sizes or ask.colors or ask.price or ask.compare):
        first = [("search_products", search_arguments(w)) for w in ask.products[:3]]
    rounds = [first] if first else []
    if value or (ask.compare and not first):
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
            return {"limit": LOW_STOCK_LIMIT}
        case "search_products":
            return search_arguments(ask.product) if ask.product else {"query": " ".join(ask.text.split()[:4])}
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
    if ask.write:
        return Plan(content=REFUSE_WRITES)
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


_FOLLOW_UP = re.compile(r"^\W*(?:and|what about|how about|also|y|und|et|e)\b", re.IGNORECASE)
FOLLOW_UP_MAX_WORDS = 5


def _follow_up(ask: Ask, earlier: Sequence[Mapping[str, Any]]) -> Ask:
    """ "and in white?" after "black tees in M?": the product (and what is not said again) carries
    over - only to a short follow-up, never to a question of its own whose product word was not
    recognised."""
    if ask.product or ask.skus or ask.low_stock or ask.value or not (ask.colors or ask.sizes):
        return ask
    if not _FOLLOW_UP.match(ask.text) and len(ask.text.split()) > FOLLOW_UP_MAX_WORDS:
        return ask
    for message in reversed(earlier):
        if message.get("role") == "user":
            before = parse_ask(message_text(message.get("content")))
            if before.product:
                return replace(
                    ask,
                    product=before.product,
                    products=before.products,
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
    if word.endswith(("ss", "sh", "ch", "x")):
        return word + "es"
    return word if word.endswith("s") else word + "s"


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


def _size(variant: Mapping[str, Any]) -> str:
    """A size as a list names it: "M", or "size 42:" for a numeric one (never read as a quantity)."""
    size = str(variant.get("size"))
    return f"size {size}:" if size[:1].isdigit() else size


def _stock_list(variants: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{_size(v)} {_number(v.get('quantity'))}" for v in variants)


def _describe_wanted(ask: Ask, fallback: str) -> str:
    words = [*ask.colors, _plural(ask.product) if ask.product else fallback]
    wanted = " ".join(words)
    if ask.sizes:
        wanted += f" in size {' or '.join(ask.sizes)}"
    return wanted


def _count(result: Mapping[str, Any], key: str) -> Any:
    """How many entries the tool said it returned (its own `count`), else None: never counted here."""
    count = result.get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _cut(result: Mapping[str, Any], what: str) -> str:
    """What to say of a list that is not whole: cut to fit the prompt (`shown` of `count`), or one
    page of a longer list (`more`)."""
    count = _count(result, what)
    notes = []
    if result.get("truncated"):
        shown = result.get("shown")
        of = f" of the {_number(count)}" if count is not None else ""
        notes.append(
            f"Only {_number(shown)}{of} {what} the lookup returned fit in this answer."
            if isinstance(shown, int)
            else f"The lookup's list was cut to fit in this answer, so some {what} are not shown."
        )
    if result.get("more"):
        read = f"the {_number(count)} {what} read here" if count is not None else f"the {what} read here"
        notes.append(f"There are more than {read}; a narrower question finds the rest.")
    return " ".join(notes)


def _out_variants(product: Mapping[str, Any], sizes: Sequence[str]) -> list[Mapping[str, Any]]:
    return [v for v in _variants(product, sizes) if v.get("quantity") == 0]


def _low_variants(product: Mapping[str, Any], sizes: Sequence[str]) -> list[Mapping[str, Any]]:
    low = []
    for variant in _variants(product, sizes):
        quantity, reorder = variant.get("quantity"), variant.get("reorder_level")
        if isinstance(quantity, int) and isinstance(reorder, int) and quantity <= reorder:
            low.append(variant)
    return low


def _answer_narrowed(products: Sequence[Mapping[str, Any]], result: Mapping[str, Any], ask: Ask) -> str:
    """Products of a search, only the sizes out of stock (or at or below their reorder level)."""
    when = _as_of(result)
    out = ask.out_of_stock
    lines = []
    for product in products:
        if out:
            variants = _out_variants(product, ask.sizes)
            if variants:
                lines.append(
                    f"- {_product_label(product)}: {', '.join(str(v.get('size')) for v in variants)}"
                )
        else:
            variants = _low_variants(product, ask.sizes)
            if variants:
                stock = ", ".join(
                    f"{_size(v)} {_number(v.get('quantity'))} "
                    f"(reorder level {_number(v.get('reorder_level'))})"
                    for v in variants
                )
                lines.append(f"- {_product_label(product)}: {stock}")
    what = _describe_wanted(ask, "products")
    if not lines:
        state = "out of stock" if out else "at or below its reorder level"
        text = f"None of the {what} I found is {state}, {when}."
    elif out:
        text = "\n".join([f"These {what} are out of stock (0 left) in the sizes named, {when}:", *lines])
    else:
        text = "\n".join([f"These {what} are at or below their reorder level, {when}:", *lines])
    cut = _cut(result, "products")
    return f"{text}\n{cut}" if cut else text


def _answer_products(products: Sequence[Mapping[str, Any]], result: Mapping[str, Any], ask: Ask) -> str:
    when = _as_of(result)
    matching = [p for p in products if not ask.colors or _color_matches(p.get("color"), ask.colors)]
    matching = [p for p in matching if _variants(p, ask.sizes) or not ask.sizes]
    if not matching:
        return f"I found no {_describe_wanted(ask, 'products')} in the catalog ({when})."
    if ask.out_of_stock or ask.low_stock:
        return _answer_narrowed(matching, result, ask)
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
            if not ask.sizes and product.get("total_stock") is not None:
                text += f" That is {_number(product.get('total_stock'))} in all."
        else:
            text = f"{_product_label(product)} has no sizes set up yet ({when})."
        if ask.price and product.get("price") is not None:
            notes.append(f"It is priced at {_number(product.get('price'), money=True)}.")
        if product.get("coming_soon"):
            notes.append("It is marked as coming soon.")
        return " ".join([text, *notes])
    lines = [f"Here is what I found, {when}:"]
    for product in matching:
        variants = _variants(product, ask.sizes)
        stock = _stock_list(variants) if variants else "no sizes set up"
        if variants and not ask.sizes and product.get("total_stock") is not None:
            stock += f" ({_number(product.get('total_stock'))} in all)"
        extra = f", priced at {_number(product.get('price'), money=True)}" if ask.price else ""
        soon = " (coming soon)" if product.get("coming_soon") else ""
        lines.append(f"- {_product_label(product)}{soon}: {stock}{extra}")
    cut = _cut(result, "products")
    if cut:
        lines.append(cut)
    return "\n".join(lines)


def _answer_low_stock(result: Mapping[str, Any], ask: Ask) -> str:
    """The low-stock list, whole (or said to be cut, with how many there are); for "out of stock",
    only its entries at 0."""
    when = _as_of(result)
    items = [i for i in result.get("items") or () if isinstance(i, dict)]
    if ask.product:  # a forced call for a product: its entries, if any
        of_product = [i for i in items if ask.product in str(i.get("name", "")).lower()]
        items = of_product or items
    count = _count(result, "items")

    def line(item: Mapping[str, Any]) -> str:
        return (
            f"- {item.get('name') or 'Product'}{f' in {c}' if (c := item.get('color')) else ''} "
            f"({item.get('sku')}) size {item.get('size')}: "
            f"{_number(item.get('quantity'))} in stock, reorder level {_number(item.get('reorder_level'))}"
        )

    if ask.out_of_stock:
        out = [i for i in items if i.get("quantity") == 0]
        if not out:
            text = f"Nothing on the low-stock list is out of stock, {when}."
        else:
            text = "\n".join([f"These are out of stock, {when}:", *(line(i) for i in out)])
        cut = _cut(result, "low-stock entries")
        return f"{text}\n{cut}" if cut else text
    if not items:
        return f"Nothing is at or below its reorder level, {when}."
    whole = len(items) <= LOW_STOCK_SHOWN
    if count is not None and not ask.product:
        head = f"{_number(count)} variants are at or below their reorder level, {when}"
    else:
        head = f"These are at or below their reorder level, {when}"
    if not whole:  # the largest shortfalls first; the rest are said to be there, never dropped silently
        head += (
            ". Those with the largest shortfall come first; the rest are not listed here (ask about "
            "a category or a product, or see GET /inventory/low-stock)"
        )
        items = sorted(items, key=lambda i: -(i.get("shortfall") or 0))[:LOW_STOCK_SHOWN]
    lines = [head + ":", *(line(i) for i in items)]
    cut = _cut(result, "variants")
    if cut:
        lines.append(cut)
    return "\n".join(lines)


def _answer_value(result: Mapping[str, Any], ask: Ask) -> str:
    when = _as_of(result)
    currency = result.get("currency") or ""
    categories = [c for c in result.get("by_category") or () if isinstance(c, dict)]
    asked = [CATEGORY_OF[w] for w in ask.products if w in CATEGORY_WORDS] if by_category(ask) else []
    if asked:
        lines = [f"Stock on hand by category, {when}:"]
        for name in dict.fromkeys(asked):
            entry = next((c for c in categories if c.get("category") == name), None)
            if entry is None:
                lines.append(f"- {name}: no stock recorded")
            else:
                lines.append(
                    f"- {name}: {_number(entry.get('units'))} units worth "
                    f"{_number(entry.get('value'), money=True)} {currency}".rstrip()
                )
        return "\n".join(lines)
    text = (
        f"{when[:1].upper()}{when[1:]} the stock on hand is {_number(result.get('units'))} units "
        f"worth {_number(result.get('value'), money=True)} {currency}".rstrip()
        + "."
    )
    if ask.totals and result.get("products") is not None:
        text += (
            f" That is {_number(result.get('products'))} products in "
            f"{_number(result.get('variants'))} variants (sizes)."
        )
    categories.sort(key=lambda c: -float(c.get("value") or 0))
    if categories:
        shown = categories if ask.compare else categories[:3]
        top = ", ".join(f"{c.get('category')} {_number(c.get('value'), money=True)}" for c in shown)
        label = "By value" if ask.compare else "The largest categories by value"
        text += f" {label}: {top}."
    return text


def _answer(name: str, result: Any, ask: Ask) -> str:
    if not isinstance(result, dict):
        return "The lookup returned something I could not read."
    when = _as_of(result)
    if result.get("error"):
        message = result.get("message") or result["error"]
        return f"I could not look that up: {message} ({when})."
    if name == "unknown":
        name = _guess_tool(result)
    if name == "search_products":
        products = [p for p in result.get("products") or () if isinstance(p, dict)]
        return _answer_products(products, result, ask)
    if name == "get_product":
        product = result.get("product")
        if not isinstance(product, dict):
            return f"I could not find that product ({when})."
        return _answer_products([product], result, _without_colors(ask))
    if name == "list_low_stock":
        return _answer_low_stock(result, ask)
    if name == "get_inventory_value":
        return _answer_value(result, ask)
    return f"The {name} tool answered, but I do not know how to read its result ({when})."


def _without_colors(ask: Ask) -> Ask:
    """A product asked for by SKU: its colour is the SKU's, whatever colour words the question had."""
    return replace(ask, colors=())


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
            f'You asked: "{_quote(ask.text)}". Which product do you mean? I did not recognise one in '
            "your question. Tell me a product name or a category (tees, shirts, hoodies, jackets, pants, "
            "shorts, dresses, footwear, accessories), a colour and a size, or a SKU like TE-0001, and I "
            "will check the live stock."
        )
    if _THANKS.search(ask.text):
        return "You're welcome! Ask me anytime about stock levels, sizes or what needs reordering."
    if _GREETING.match(ask.text) and len(ask.text.split()) <= 3:
        return f"Hello! I am the offline stand-in model of shelfwise: fixed rules, not an LLM. {CAN_ANSWER}"
    opening = "Hello! " if _GREETING.match(ask.text) else ""
    return (
        f'{opening}I did not understand "{_quote(ask.text)}", so I have not looked anything up. I am the '
        "offline stand-in model of shelfwise: I follow fixed rules rather than understanding language, "
        f"and I would rather say so than answer something else. {CAN_ANSWER}"
    )


CAN_ANSWER = (
    "I can answer how many of a product are in stock (by name or category, colour and size, or a SKU "
    "like TE-0001), what is out of stock or running low, the inventory's total units and value, and "
    "how categories compare. I can read the inventory but not change it."
)
REFUSE_WRITES = (
    "I cannot change stock or products: I can only read the inventory. An inventory admin changes it "
    "through the inventory API: `POST /products/{sku}/variants/{size}/adjustments` with a delta and a "
    "reason (or `POST /inventory/adjustments` for several lines at once), `PUT "
    "/products/{sku}/variants/{size}` to set a quantity, `PATCH /products/{sku}` for a product's name, "
    "colour or price, and `DELETE /products/{sku}`. I can still look up the current stock for you."
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
