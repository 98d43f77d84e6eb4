"""The composition root: builds storage and services from settings, lazily, once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from shelfwise.inventory.service import InventoryService
from shelfwise.settings import Settings
from shelfwise.storage.dynamo import Dynamo, dynamodb_client
from shelfwise.storage.inventory import InventoryRepository

if TYPE_CHECKING:
    from shelfwise.chat.service import ChatService
    from shelfwise.chat.titles import TitleService
    from shelfwise.mcp import McpServer


class Services:
    def __init__(self, settings: Settings, *, dynamo: Dynamo | None = None) -> None:
        self.settings = settings
        self._dynamo = dynamo

    @cached_property
    def dynamo(self) -> Dynamo:
        if self._dynamo is not None:
            return self._dynamo
        client = dynamodb_client(self.settings.aws_region, self.settings.dynamodb_endpoint_url)
        return Dynamo(client, self.settings.table_name)

    @cached_property
    def inventory(self) -> InventoryService:
        return InventoryService(
            InventoryRepository(self.dynamo, stock_retry_attempts=self.settings.stock_retry_attempts)
        )

    @cached_property
    def chat(self) -> ChatService:
        from shelfwise.chat.llm import ChatModel
        from shelfwise.chat.service import ChatService
        from shelfwise.chat.tools import InventoryTools
        from shelfwise.storage.conversations import ConversationRepository

        return ChatService(
            self.settings,
            ConversationRepository(self.dynamo),
            ChatModel(self.settings),
            InventoryTools(self.inventory),
        )

    @cached_property
    def mcp(self) -> McpServer:
        """The inventory tools over MCP (POST /mcp): the chat's tool runner, built on first use."""
        from shelfwise.chat.tools import InventoryTools
        from shelfwise.mcp import McpServer

        return McpServer(lambda: InventoryTools(self.inventory), version=self.settings.version)

    @cached_property
    def local_signing_key(self) -> bytes:
        from shelfwise.identity import signing_key

        return signing_key(self.settings)

    @cached_property
    def titles(self) -> TitleService:
        """Titles get their own model client: TitleFunction (and the local stream pump's thread) run
        it on another event loop than the chat's."""
        from shelfwise.chat.llm import ChatModel
        from shelfwise.chat.titles import TitleService
        from shelfwise.storage.titles import TitleRepository

        return TitleService(self.settings, TitleRepository(self.dynamo), ChatModel(self.settings))
