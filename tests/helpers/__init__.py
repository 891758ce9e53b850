"""What several test modules share: paths, moths-fit arguments, synthetic images,
prediction folders, a local zoo server.

Test modules import these as ``helpers.<module>`` (``tests/`` is on ``sys.path``
under pytest); they never import one another nor ``conftest``. Helpers may import
``moths_framework`` and each other, never a test module.
"""
