"""One controller per pane: what the pane shows and what its keys do, without layout.

The cockpit screen composes the panes and hands each controller the widgets
it drives; workers post messages (``tui.messages``) that the screen routes to
the controller they concern. Controllers know each other only through the
constructor arguments the screen passes, never through queries.
"""
