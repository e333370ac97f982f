"""Private infrastructure shared by every layer of tikhon.

``arrays``: the array layer (NumPy or torch, told apart without importing
torch); ``checks``: the argument checks; ``loop``: the iteration loop and the
solver protocol; ``result``: the :class:`Result` every solver returns.

This package imports nothing else of tikhon, so that ``operators``,
``solvers``, ``learned`` and the top-level modules may all import it.
"""
