"""The chat page in a real browser (Debian's Chromium, never a downloaded one) against `make run`'s
stack in its own process, with the offline model slowed down so that an answer takes a second or two:
sign in, ask and watch the answer grow, the tool chip, Stop, a reload mid-answer that resumes without
repeating text, titles, rename and delete, one user not seeing another's conversations, model output
with markup shown as text, and markdown in an answer formatted (with markup inside it still text).

Screenshots of each test's last state go to .artifacts/browser/.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, Playwright, Route, expect, sync_playwright

from tests.fixtures.local_stack import ROOT, LocalStack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / ".artifacts" / "browser"
TOKEN_DELAY_MS = "40"  # a word per chunk: an answer of a few dozen words takes a second or two
STOCK_QUESTION = "how many medium black tees are in stock?"
ADMIN_GROUP = "inventory-admins"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        data_dir=tmp_path_factory.mktemp("browser-data"),
        SHELFWISE_OFFLINE_DELAY_MS=TOKEN_DELAY_MS,
        # admins get a budget no turn fits in (everyone else has no limit): the refusal on the page
        SHELFWISE_BUDGET_TOKENS_PER_DAY_BY_GROUP=json.dumps({ADMIN_GROUP: 1}),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield chromium
    chromium.close()


class Dialogs:
    """Every alert/confirm/prompt the page opened; confirms accepted, prompts answered `answer`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.answer = ""

    def handle(self, dialog: Dialog) -> None:
        self.seen.append((dialog.type, dialog.message))
        if dialog.type == "prompt":
            dialog.accept(self.answer)
        elif dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()


_DIALOGS: dict[Page, Dialogs] = {}


@pytest.fixture
def open_page(
    browser: Browser, stack: LocalStack, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Page]]:
    """Pages in contexts of their own (one per user); each one's screenshot saved at the end."""
    pages: list[Page] = []

    def new(width: int = 1280, height: int = 800) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        seen = _DIALOGS[page] = Dialogs()
        page.on("dialog", seen.handle)
        page.goto(stack.url + "/")
        pages.append(page)
        return page

    yield new
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for n, page in enumerate(pages):
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{n}.png"), full_page=True)
        page.context.close()
        _DIALOGS.pop(page, None)


def dialogs(page: Page) -> Dialogs:
    return _DIALOGS[page]


def sign_in(page: Page, user: str, *, admin: bool = False) -> None:
    page.get_by_label("User").fill(user)
    if admin:
        page.get_by_label("Admin").check()
    page.get_by_role("button", name="Sign in (local)").click()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()


def new_chat(page: Page) -> None:
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_enabled()


def ask(page: Page, question: str) -> Locator:
    page.get_by_role("textbox", name="Message", exact=True).fill(question)
    page.get_by_role("button", name="Send").click()
    return page.locator("#log .msg.assistant .text").last


def answering(page: Page) -> bool:
    return page.locator("#log .msg.assistant.streaming").count() > 0


def wait_until_answered(page: Page) -> None:
    expect(page.locator("#log .msg.assistant.streaming")).to_have_count(0, timeout=30_000)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()


def watch(answer: Locator, page: Page, timeout: float = 30) -> list[str]:
    """The distinct texts the answer showed, polled until it was done."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        streaming = answering(page)
        if not answer.count():  # refused (the alert says why) or wiped from the page
            alert = page.get_by_role("alert")
            raise AssertionError(f"no answer on the page; the alert says: {alert.text_content()!r}")
        text = answer.text_content() or ""
        if not seen or text != seen[-1]:
            seen.append(text)
        if not streaming:
            return seen
    raise AssertionError(f"the answer did not finish within {timeout} s: {seen[-1:]}")


def wait_for_text(answer: Locator, length: int, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = answer.text_content() or ""
        if len(text) >= length:
            return text
    raise AssertionError(f"the answer never reached {length} characters")


def session(page: Page) -> tuple[dict[str, str], str]:
    token = page.evaluate("sessionStorage.getItem('shelfwise.token')")
    conversation = page.evaluate("sessionStorage.getItem('shelfwise.conversation')")
    assert token
    assert conversation
    return {"Authorization": f"Bearer {token}"}, str(conversation)


def stored_answer(stack: LocalStack, page: Page) -> dict[str, Any]:
    headers, conversation = session(page)
    listed = httpx.get(f"{stack.url}/conversations/{conversation}/messages", headers=headers)
    messages = listed.json()["items"]
    answers = [m for m in messages if m["role"] == "assistant"]
    assert answers, messages
    last: dict[str, Any] = max(answers, key=lambda m: m["seq"])
    return last


def shows_as_formatted(answer: Locator, content: str) -> None:
    """An answer of a sentence or two and "- " lines shows the sentences as paragraphs and each line
    as an item of a list, without its "- "."""
    lines = content.splitlines()
    items = [line.removeprefix("- ") for line in lines if line.startswith("- ")]
    expect(answer.locator("ul > li")).to_have_text(items)
    expect(answer.locator("p")).to_have_text([line for line in lines if line and not line.startswith("- ")])


def conversation_titles(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Conversations").locator("li .open")


def test_sign_in_ask_and_watch_the_answer_grow_then_get_a_title(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    page = open_page()
    sign_in(page, "alice")
    new_chat(page)
    expect(conversation_titles(page)).to_have_text(["New conversation"])

    texts = watch(ask(page, "Hello! What can you help me with today?"), page)

    grown = [t for t in texts if t]
    assert len(set(grown)) >= 4, f"the answer arrived in too few steps: {texts}"
    assert all(b.startswith(a) for a, b in itertools.pairwise(grown)), "text was replaced, not grown"
    stored = stored_answer(stack, page)
    assert stored["status"] == "complete"
    assert grown[-1] == stored["content"]
    # the title generated after the first answer shows up in the list without a reload
    expect(conversation_titles(page).first).not_to_have_text("New conversation", timeout=20_000)
    page.locator("#log .msg.assistant details summary").last.click()
    expect(page.locator("#log .msg.assistant details").last).to_contain_text("Latency")


def test_a_stock_question_shows_the_tool_chip(open_page: Callable[..., Page], stack: LocalStack) -> None:
    page = open_page()
    sign_in(page, "tools-user")
    new_chat(page)
    ask(page, STOCK_QUESTION)
    chip = page.locator("#log .msg.assistant .chip").first
    expect(chip).to_be_visible(timeout=15_000)
    expect(chip).to_contain_text("looking up stock")
    wait_until_answered(page)
    stored = stored_answer(stack, page)
    assert stored["tool_calls"], stored
    shows_as_formatted(page.locator("#log .msg.assistant .text").last, stored["content"])
    # the inventory panel, on demand
    inventory = page.get_by_role("complementary", name="Inventory")
    inventory.get_by_role("button", name="Refresh inventory").click()
    expect(inventory).to_contain_text("units worth")
    expect(inventory.get_by_role("listitem").first).to_be_visible()
    # each low variant names its product's colour and SKU: the demo has products of one name
    headers, _ = session(page)
    low = httpx.get(f"{stack.url}/inventory/low-stock?limit=20", headers=headers).json()["items"]
    rows = inventory.get_by_role("listitem")
    expect(rows).to_have_count(len(low))
    for row, item in zip(rows.all(), low, strict=True):
        expect(row).to_contain_text(f"{item['name']} in {item['color']} {item['size']} ({item['sku']})")
    assert len(set(rows.all_inner_texts())) == len(low)


def test_stop_ends_the_answer_mid_way(open_page: Callable[..., Page], stack: LocalStack) -> None:
    page = open_page()
    sign_in(page, "stopper")
    new_chat(page)
    answer = ask(page, "Tell me everything about running a shop, in detail please.")
    wait_for_text(answer, 5)
    page.get_by_role("button", name="Stop").click()
    wait_until_answered(page)
    stored = stored_answer(stack, page)
    assert stored["status"] == "interrupted", stored
    assert stored["finish_reason"] == "stopped", stored
    assert answer.text_content() == stored["content"]
    expect(page.locator("#log .msg.assistant").last).to_have_attribute("data-status", "interrupted")
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_enabled()


def test_a_reload_mid_answer_resumes_without_repeating_text(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    page = open_page()
    sign_in(page, "reloader")
    new_chat(page)
    before = wait_for_text(ask(page, "Hello there, how are you doing today? Tell me about the shop."), 10)
    page.reload()
    # the page picks the answer up where it was: partly shown, still being written
    expect(page.locator("#log .msg.assistant.streaming")).to_have_count(1)
    answer = page.locator("#log .msg.assistant .text").last
    texts = watch(answer, page)
    wait_until_answered(page)
    stored = stored_answer(stack, page)
    assert stored["status"] == "complete", stored
    assert len(stored["content"]) > len(before), "the answer had ended before the reload"
    final = answer.text_content()
    assert len(set(texts)) >= 2, f"the answer did not go on after the reload: {texts}"
    assert final == stored["content"], texts
    assert page.locator("#log .msg.assistant").count() == 1
    assert page.locator("#log .msg.user").count() == 1


def test_rename_and_delete_a_conversation(open_page: Callable[..., Page], stack: LocalStack) -> None:
    page = open_page()
    sign_in(page, "renamer")
    new_chat(page)
    nav = page.get_by_role("navigation", name="Conversations")
    dialogs(page).answer = "Winter coats"
    nav.get_by_role("button", name="Rename New conversation").click()
    expect(conversation_titles(page)).to_have_text(["Winter coats"])
    expect(page.get_by_role("heading", name="Winter coats")).to_be_visible()
    headers, conversation = session(page)
    renamed = httpx.get(f"{stack.url}/conversations/{conversation}", headers=headers)
    assert renamed.json()["title"] == "Winter coats"

    nav.get_by_role("button", name="Delete Winter coats").click()
    expect(conversation_titles(page)).to_have_count(0)
    assert [t for t, _ in dialogs(page).seen] == ["prompt", "confirm"]
    assert httpx.get(f"{stack.url}/conversations/{conversation}", headers=headers).status_code == 404
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_disabled()


def test_a_second_user_does_not_see_the_first_users_conversations(open_page: Callable[..., Page]) -> None:
    first = open_page()
    sign_in(first, "owner-one")
    new_chat(first)
    dialogs(first).answer = "Private plans"
    first.get_by_role("button", name="Rename New conversation").click()
    expect(conversation_titles(first)).to_have_text(["Private plans"])

    second = open_page()
    sign_in(second, "owner-two")
    new_chat(second)
    expect(conversation_titles(second)).to_have_text(["New conversation"])
    expect(second.get_by_text("Private plans")).to_have_count(0)
    first.reload()  # and the first still sees only theirs
    expect(conversation_titles(first)).to_have_text(["Private plans"])


def test_markup_in_the_answer_shows_as_text_and_never_runs(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    page = open_page()
    sign_in(page, "mallory")
    new_chat(page)
    markup = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    answer = ask(page, f"What is {markup}?")
    wait_until_answered(page)
    stored = stored_answer(stack, page)
    assert "<img src=x onerror=alert(1)>" in stored["content"], stored["content"]
    expect(answer).to_have_text(stored["content"])
    expect(page.locator("#log img")).to_have_count(0)
    expect(page.locator("#log script")).to_have_count(0)
    expect(page.locator("#log .msg.user .text")).to_have_text(f"What is {markup}?")
    assert dialogs(page).seen == []


def test_markdown_in_the_answer_is_formatted_and_markup_inside_it_stays_text(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    page = open_page()
    sign_in(page, "formatter")
    new_chat(page)
    # the offline model quotes the question (up to 20 words, on one line) in its answer
    question = (
        "Is **bold** and *slanted* and `code` fine, with **<script>alert(3)</script>** and"
        " `<img src=x onerror=alert(4)>` too?"
    )
    answer = ask(page, question)
    wait_until_answered(page)
    stored = stored_answer(stack, page)
    assert "**bold**" in stored["content"], stored["content"]
    assert "`<img src=x onerror=alert(4)>`" in stored["content"], stored["content"]
    expect(answer.locator("strong")).to_have_text(["bold", "<script>alert(3)</script>"])
    expect(answer.locator("em")).to_have_text(["slanted"])
    expect(answer.locator("code")).to_have_text(["code", "<img src=x onerror=alert(4)>"])
    expect(answer).to_contain_text("Is bold and slanted and code fine, with <script>")
    expect(answer).not_to_contain_text("**")
    expect(page.locator("#log img")).to_have_count(0)
    expect(page.locator("#log script")).to_have_count(0)
    # the question itself is shown as typed
    expect(page.locator("#log .msg.user .text")).to_have_text(question)

    # an answer with a list (the low-stock one): one list item per line, without the "- "
    answer = ask(page, "What is running low?")
    wait_until_answered(page)
    content = stored_answer(stack, page)["content"]
    assert "\n- " in content, content
    shows_as_formatted(answer, content)
    assert dialogs(page).seen == []


_GROUNDING = re.compile(r'("unsupported"\s*:\s*)\[\]')
_MESSAGES = re.compile(r".*/conversations/[0-9a-f]{32}/messages(/[0-9a-f]{32})?(\?.*)?$")


def test_figures_no_lookup_returned_are_marked_in_the_answer(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    page = open_page()
    sign_in(page, "checker")
    new_chat(page)
    # the offline stand-in states only figures its tools returned: nothing is marked
    answer = ask(page, STOCK_QUESTION)
    wait_until_answered(page)
    stored = stored_answer(stack, page)
    assert stored["grounding"]["unsupported"] == [], stored
    assert "17" in stored["content"], stored["content"]
    expect(answer.locator("mark")).to_have_count(0)
    details = page.locator("#log .msg.assistant details").last
    expect(details).to_contain_text("all found in this answer's lookups")

    # an answer whose check found a figure no lookup held (as a real model's may): the server says
    # so in `done`, in the message and in the list; here the responses are edited to say it of "17"
    def says_17_is_unsupported(route: Route) -> None:
        response = route.fetch()
        body = _GROUNDING.sub(r'\1["17"]', response.text())
        route.fulfill(response=response, body=body)

    page.route(_MESSAGES, says_17_is_unsupported)
    answer = ask(page, STOCK_QUESTION)
    wait_until_answered(page)
    marked = answer.locator("mark.unsupported")
    expect(marked).to_have_text(["17"])  # that figure, where it stands, and no other
    expect(marked).to_have_attribute("title", "No lookup in this answer returned this figure")
    expect(answer).to_contain_text(stored["content"].splitlines()[1].removeprefix("- "))  # text unchanged
    expect(page.locator("#log .msg.assistant details").last).to_contain_text(
        "not found in any lookup (marked): 17"
    )
    # opened again (from the list of messages), the mark is still there
    page.reload()
    expect(page.locator("#log .msg.assistant").last.locator("mark.unsupported")).to_have_text(["17"])
    expect(page.locator("#log script")).to_have_count(0)
    assert dialogs(page).seen == []


def test_the_page_fits_a_phone_and_works_from_the_keyboard(open_page: Callable[..., Page]) -> None:
    page = open_page(width=390, height=844)
    page.get_by_label("User").fill("phone")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Signed in as phone")).to_be_visible()
    page.get_by_role("button", name="New chat").focus()
    page.keyboard.press("Enter")
    message = page.get_by_role("textbox", name="Message", exact=True)
    expect(message).to_be_focused()
    message.type("hi")
    page.keyboard.press("Enter")
    wait_until_answered(page)
    assert page.locator("#log .msg.assistant .text").last.text_content()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"


def test_a_spent_budget_is_explained_with_when_it_resets(open_page: Callable[..., Page]) -> None:
    page = open_page()
    sign_in(page, "big-spender", admin=True)
    new_chat(page)
    ask(page, "What is running low?")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("You have used today's budget. It resets at")
    # nothing was stored: no answer, and the question is back in the box to send later
    expect(page.locator("#log .msg")).to_have_count(0)
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_have_value("What is running low?")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def _same_user_tab(open_page: Callable[..., Page], headers: dict[str, str], conversation: str) -> Page:
    """Another tab of the same user, on the same conversation."""
    page = open_page()
    page.evaluate(
        "([token, conversation]) => { sessionStorage.setItem('shelfwise.token', token);"
        " sessionStorage.setItem('shelfwise.user', 'same-user');"
        " sessionStorage.setItem('shelfwise.conversation', conversation); }",
        [headers["Authorization"].removeprefix("Bearer "), conversation],
    )
    page.reload()
    expect(page.get_by_text("Signed in as same-user")).to_be_visible()
    return page


def test_asking_during_a_running_answer_offers_to_watch_it(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    first = open_page()
    sign_in(first, "two-tabs")
    new_chat(first)
    headers, conversation = session(first)
    second = _same_user_tab(open_page, headers, conversation)
    expect(second.get_by_role("textbox", name="Message", exact=True)).to_be_enabled()

    ask(first, "Hello there, how are you doing today? Tell me about the shop.")
    expect(first.locator("#log .msg.assistant.streaming")).to_have_count(1)
    ask(second, "And what is running low?")
    alert = second.get_by_role("alert")
    expect(alert).to_contain_text("still being written")
    alert.get_by_role("button", name="Watch the running answer").click()
    expect(alert).to_be_hidden()
    wait_until_answered(second)
    wait_until_answered(first)
    stored = stored_answer(stack, first)
    assert stored["status"] == "complete", stored
    for page in (first, second):
        assert page.locator("#log .msg.assistant .text").last.text_content() == stored["content"]
    expect(second.locator("#log .msg.assistant")).to_have_count(1)
    expect(second.locator("#log .msg.user")).to_have_count(0)  # the refused question was not added
    expect(second.get_by_role("textbox", name="Message", exact=True)).to_have_value(
        "And what is running low?"
    )


def test_opening_a_conversation_whose_answer_is_being_written_follows_it(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    first = open_page()
    sign_in(first, "follower")
    new_chat(first)
    headers, conversation = session(first)
    ask(first, "Hello there, how are you doing today? Tell me about the shop.")
    wait_for_text(first.locator("#log .msg.assistant .text").last, 10)

    second = _same_user_tab(open_page, headers, conversation)
    answer = second.locator("#log .msg.assistant .text").last
    expect(second.locator("#log .msg.assistant.streaming")).to_have_count(1)
    texts = watch(answer, second)
    stored = stored_answer(stack, first)
    assert len(set(texts)) >= 2, texts
    assert texts[-1] == stored["content"]
    expect(second.locator("#log .msg.assistant")).to_have_count(1)


def test_a_failing_model_is_explained(open_page: Callable[..., Page], stack: LocalStack) -> None:
    control = stack.model_url.removesuffix("/v1")
    page = open_page()
    sign_in(page, "unlucky")
    new_chat(page)
    queued = httpx.post(
        f"{control}/_offline/failures", json={"mode": "unavailable", "times": 20, "task": "chat"}
    )
    assert queued.status_code == 201, queued.text
    try:
        ask(page, "What is running low?")
        expect(page.get_by_role("alert")).to_contain_text(
            "The assistant's model did not answer properly. Try again in a moment.", timeout=30_000
        )
        wait_until_answered(page)
        expect(page.get_by_role("button", name="Send")).to_be_enabled()
    finally:
        httpx.delete(f"{control}/_offline/failures")


_COUNT_REMOVED_ANSWERS = """() => {
  window.removedAnswers = 0;
  new MutationObserver((changes) => {
    for (const change of changes)
      for (const node of change.removedNodes)
        if (node.classList && node.classList.contains("assistant")) window.removedAnswers += 1;
  }).observe(document.getElementById("log"), { childList: true });
}"""


def test_a_chat_started_while_signing_in_still_loads_keeps_its_answer(
    open_page: Callable[..., Page], stack: LocalStack
) -> None:
    """Seen on a loaded CI machine: the page's start-up (personas, then the list) finished after the
    user had already started a chat and asked, opened that chat again and wiped the running answer
    from the page. Here the personas are held back until the answer is half-way."""
    page = open_page()
    held: list[Route] = []
    page.route("**/prompts", lambda route: held.append(route))
    sign_in(page, "quick-starter")
    new_chat(page)
    answer = ask(page, "Hello there, how are you doing today? Tell me about the shop.")
    wait_for_text(answer, 10)
    assert held, "the page asked for its personas"
    page.evaluate(_COUNT_REMOVED_ANSWERS)
    for route in held:
        route.continue_()

    wait_until_answered(page)
    expect(conversation_titles(page)).to_have_count(1)
    assert page.evaluate("window.removedAnswers") == 0, "the answer vanished from the page while running"
    stored = stored_answer(stack, page)
    assert stored["status"] == "complete", stored
    expect(page.locator("#log .msg.assistant .text")).to_have_text([stored["content"]])
    expect(page.locator("#log .msg.user")).to_have_count(1)
