"""Lepton's image plugin: the ``image`` domain and the torchvision ResNet family.

Importing this package is light; torch, torchvision and ``datasets`` load when a domain or a
backbone is built.
"""

from __future__ import annotations

__version__ = "0.1.0"
