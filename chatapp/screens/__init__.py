"""Screens of the TUI."""

from chatapp.screens.chat import ChatScreen

__all__ = ["ChatScreen"]
