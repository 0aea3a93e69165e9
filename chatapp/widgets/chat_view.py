"""The scrolling list of messages; it follows the newest text while a reply streams."""

from __future__ import annotations

from textual.containers import VerticalScroll

from chatapp.widgets.message import MessageWidget, Notice


class ChatView(VerticalScroll, can_focus=False):
    """Holds `MessageWidget`s and `Notice`s, oldest first."""

    def on_mount(self) -> None:
        self.anchor()

    async def add_message(self, message: MessageWidget) -> MessageWidget:
        await self.mount(message)
        self.anchor()
        return message

    async def add_notice(self, text: str, *, variant: str = "warning") -> Notice:
        notice = Notice(text, variant=variant)
        await self.mount(notice)
        self.anchor()
        return notice

    @property
    def messages(self) -> list[MessageWidget]:
        return list(self.query_children(MessageWidget))

    async def clear(self) -> None:
        await self.remove_children()
        self.anchor()
