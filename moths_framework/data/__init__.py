"""Data: sources of labelled images, preparation of an image folder, data modules.

May import the core modules (``hierarchy``, ``images``, ``plugins``, ...), torch and
Lightning; never ``model``, ``train`` or anything above them.
"""
