"""The package logger: ``logging.getLogger("hiref")``."""

from __future__ import annotations

import logging

logger = logging.getLogger("hiref")
