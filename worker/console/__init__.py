"""The operations console: server-rendered pages on the api role at ``/console`` (DESIGN §2).

``web`` has the pages and actions, ``sessions`` the sign-in sessions and rate limit,
``overview`` the organizations' health. The composition root builds a :class:`ConsoleContext`
and calls :func:`add_console` on the api role's application.
"""

from worker.console.web import ConsoleContext, add_console, console_app

__all__ = ["ConsoleContext", "add_console", "console_app"]
