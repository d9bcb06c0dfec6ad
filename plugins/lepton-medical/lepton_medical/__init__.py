"""Lepton's medical-imaging plugin: the ``medical-image`` domain (DICOM, NIfTI, 8/16-bit PNG and
TIFF, MedMNIST ``.npz``), one-channel ResNets built through the registry from the image plugin,
and clinical metrics (sensitivity, specificity, PPV, NPV at a chosen threshold, calibration).

Importing this package is light; pydicom, nibabel, torch and ``datasets`` load when used.
"""

from __future__ import annotations

__version__ = "0.1.0"
