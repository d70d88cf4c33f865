"""The Provena migration layer under its first name: ``deviceauth.compat`` is ``deviceauth.provena``.

Kept so code written against the first release keeps importing; new code imports
``deviceauth.provena``. Both names give the same classes (``deviceauth.compat.DeviceFlowManager
is deviceauth.provena.DeviceFlowManager``).
"""

from __future__ import annotations

from .provena import (
    DEFAULT_CLIENT_ID,
    LOCAL_STORAGE_DEFAULT,
    AuthFlow,
    BearerAuth,
    DeviceFlowManager,
    Stage,
    StageTokens,
    StorageType,
    Tokens,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "LOCAL_STORAGE_DEFAULT",
    "AuthFlow",
    "BearerAuth",
    "DeviceFlowManager",
    "Stage",
    "StageTokens",
    "StorageType",
    "Tokens",
]
