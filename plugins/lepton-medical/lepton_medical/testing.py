"""Makers of real medical image files for tests (this plugin's and others'): DICOM files written
with pydicom (rescale, window, MONOCHROME1/2, multi-frame, compressed, without pixels) and NIfTI
volumes written with nibabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_colour_dicom", "write_dicom", "write_nifti"]


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    patient_id: str = "PATIENT-0001",
    patient_name: str = "Doe^Jane",
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    with_pixels: bool = True,
    compressed: bool = False,
) -> Path:
    """A DICOM file holding ``stored`` (``(rows, cols)`` or ``(frames, rows, cols)``) as signed
    16-bit stored values, with the given header. ``compressed=True`` declares JPEG Baseline and
    stores encapsulated bytes that need a JPEG decoder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        CTImageStorage,
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        generate_uid,
    )

    arr = np.asarray(stored)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if compressed else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.Modality = "CT"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if with_pixels:
        frames = arr if arr.ndim == 3 else arr[None]
        ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
        if arr.ndim == 3:
            ds.NumberOfFrames = int(frames.shape[0])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        if compressed:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            fake = [
                b"\xff\xd8\xff\xdb" + bytes(frame.astype(np.uint8).tobytes()) + b"\xff\xd9"
                for frame in frames
            ]
            ds.PixelData = encapsulate(fake)
            ds["PixelData"].VR = "OB"
        else:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.PixelData = frames.astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_colour_dicom(path: Path, rgb: np.ndarray, *, patient_id: str = "PATIENT-0001") -> Path:
    """A colour DICOM file (a visible-light photograph, as in dermoscopy or microscopy) holding
    ``rgb``, ``(rows, cols, 3)`` ``uint8``, as interleaved 8-bit RGB."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, VLPhotographicImageStorage, generate_uid

    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VLPhotographicImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = VLPhotographicImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "XC"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_nifti(path: Path, volume: np.ndarray) -> Path:
    """A NIfTI-1 file (``.nii`` or ``.nii.gz``) holding ``volume`` as float32, identity affine."""
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    image = nibabel.Nifti1Image(np.asarray(volume, dtype=np.float32), np.eye(4))  # type: ignore[no-untyped-call]
    nibabel.save(image, str(path))
    return path
