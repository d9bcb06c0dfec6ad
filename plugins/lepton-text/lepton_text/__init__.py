"""lepton-text: the ``text`` domain and BERT-family backbones for Lepton.

Installing the distribution registers it through the ``lepton_platform`` entry-point group;
use it through the core registry::

    import lepton_platform as lp

    domain = lp.create_domain("text")
    backbone = lp.create_backbone("all-minilm-l6-v2", pretrained=True)

Importing this package imports nothing heavy; the modules ``domain``, ``backbone``,
``preprocess`` imports torch, transformers and datasets.
"""

from __future__ import annotations

__version__ = "0.1.0"
