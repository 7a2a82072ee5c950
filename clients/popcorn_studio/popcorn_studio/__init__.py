"""popcorn_studio: shotgun_api3's calls against Popcorn's studio tracker, standard library only."""

from popcorn_studio.client import (
    AuthenticationFault,
    Fault,
    NotFound,
    Popcorn,
    ProtocolError,
    ValidationFault,
)
from popcorn_studio.pipeline import publish_file, register_version, version_up

__all__ = [
    "AuthenticationFault",
    "Fault",
    "NotFound",
    "Popcorn",
    "ProtocolError",
    "ValidationFault",
    "publish_file",
    "register_version",
    "version_up",
]
__version__ = "0.1.0"
