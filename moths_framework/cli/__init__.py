"""The console commands: one small module per command that parses, calls the library and
reports (a user error is one line and exit code 2).

The top layer: may import every package; nothing imports it.
"""
