"""Deprecated location of the atomic writes, now :mod:`uncol.runtime`.

Kept only for ``uncol.teachers.cache`` until it imports ``uncol.runtime.atomic_torch_save`` (then delete
this file and its allow-list entry in ``tests/test_imports.py``).
"""
from uncol.runtime import atomic_torch_save, atomic_write, atomic_write_json, atomic_write_text

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_json", "atomic_write_text"]
