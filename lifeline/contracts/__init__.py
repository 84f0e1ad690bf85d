"""Event contracts: the CloudEvents envelope, JSON Schemas, versions and topics.

    from lifeline.contracts import new_event, decode, ContractError
"""

from .envelope import Actor, CloudEvent, ContractError, event_type, parse_type
from .registry import CURRENT_VERSIONS, decode, new_event, upcast, validate

__all__ = [
    "Actor", "CloudEvent", "ContractError", "CURRENT_VERSIONS", "decode", "event_type",
    "new_event", "parse_type", "upcast", "validate",
]
