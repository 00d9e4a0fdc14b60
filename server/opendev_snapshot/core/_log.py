"""Lazy loggers: ``logging`` costs ~10 ms to import, off the listing path."""

from __future__ import annotations


def logger(name: str):
    import logging

    return logging.getLogger(name)
