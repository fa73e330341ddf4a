"""The pure policy objects: they compute on a Clock and never sleep or do I/O.

The blocking conveniences (``acquire()``) sleep *through the clock*; the methods
underneath (``reserve()``, ``allow()``, ``assess()``) never do.
"""
