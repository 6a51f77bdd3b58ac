"""The few names of the model the command line needs before any model loads.

Owns the demo id rule and the demo types; `model` builds on them. Imports
the standard library only, so `democtl --help` (whose `create --type`
choices come from here) loads neither pydantic nor YAML.
"""

from __future__ import annotations

from enum import StrEnum

DEMO_ID_PATTERN = r"^demo-[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
DEMO_ID_MAX = 32


class DemoType(StrEnum):
    RECRUITING_AGENCY = "recruiting-agency"
    ENTERPRISE = "enterprise"
    STARTUP = "startup"
