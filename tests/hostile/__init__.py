"""The hostile suite, a package so its ``conftest`` and helpers do not collide with ``tests/conftest.py``."""
