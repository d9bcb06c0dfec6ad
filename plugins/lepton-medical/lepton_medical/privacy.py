"""Patient identifiers never leave the reader: they are replaced by salted, short hashes.

The ``group`` column (what keeps a patient's rows in one split) holds ``p-`` and 12 hex digits of
``sha256(salt + NUL + patient id)``. The salt comes from the domain (``salt=``), else the
``LEPTON_PATIENT_SALT`` environment variable, else a fixed default: set your own salt when ids
are guessable (short numbers), so that the hashes cannot be reversed by trying every id. The
same salt gives the same hashes across runs (stable splits and caches).

    >>> h = hash_patient("PAT-0001", salt="s")
    >>> h.startswith("p-"), len(h), h == hash_patient(" PAT-0001 ", salt="s")
    (True, 14, True)
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["DEFAULT_SALT", "SALT_ENV", "hash_patient", "resolve_salt"]

#: The environment variable holding the salt.
SALT_ENV = "LEPTON_PATIENT_SALT"
#: The salt used when none is given (public: set your own for guessable ids).
DEFAULT_SALT = "lepton-medical/v1"


def resolve_salt(salt: str | None = None) -> str:
    """The salt to use: ``salt``, else ``$LEPTON_PATIENT_SALT``, else :data:`DEFAULT_SALT`."""
    if salt:
        return str(salt)
    return os.environ.get(SALT_ENV) or DEFAULT_SALT


def hash_patient(patient_id: object, salt: str | None = None) -> str:
    """A short, salted, one-way stand-in for a patient id (``p-`` + 12 hex digits)."""
    text = str(patient_id).strip()
    digest = hashlib.sha256(f"{resolve_salt(salt)}\0{text}".encode()).hexdigest()
    return "p-" + digest[:12]
