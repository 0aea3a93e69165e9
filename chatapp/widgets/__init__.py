"""Widgets of the TUI; each owns its nested Message classes."""

from chatapp.widgets.chat_view import ChatView
from chatapp.widgets.message import MessageWidget, Notice
from chatapp.widgets.prompt import PromptInput
from chatapp.widgets.status_bar import StatusBar

__all__ = ["ChatView", "MessageWidget", "Notice", "PromptInput", "StatusBar"]
