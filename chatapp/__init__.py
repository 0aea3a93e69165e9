"""chatapp: a local-first terminal chat app.

Importing this package stays cheap: nothing heavy (torch, transformers, textual) is
imported here, so the command line and the TUI start fast.
"""

__version__ = "0.1.0"
