"""HTML pages from the Jinja2 templates shipped in `kronos_bot/backtest/templates/` (package data).

Why templates and not f-strings: the markup lives in one place per page, every value is escaped by
default (autoescape on: a symbol or a rejection reason can never break the page), and the Python side
only decides what the numbers are. Templates are read through the installed package (PackageLoader uses
importlib), so a non-editable install finds them as well as a checkout does. Images are inlined as data
URIs: the pages stay self-contained (no scripts, no network at view time).
"""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("kronos_bot.backtest", TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
