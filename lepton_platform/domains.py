"""The domain contract: how a modality's sources become a ``datasets.Dataset`` in the standard
schema that every engine reads.

The standard schema: the domain's input column(s) (``image``, ``text``, ``audio``,
``features``, ...), ``label`` (a ``ClassLabel`` for classification), and optional ``domain``
(which source domain a row came from) and ``group`` (patient, speaker, document: no group is
split across train, validation and test).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

    from lepton_platform.data import BadRecords

__all__ = ["Domain"]


class Domain(ABC):
    """Reads one modality's sources. Subclass it in a plugin and return it from a
    :class:`~lepton_platform.specs.DomainSpec` factory."""

    #: Registered name (``image``, ``text``, ...).
    name: str = ""
    #: The input columns of the standard schema, in order (``("text", "text_pair")``).
    input_columns: tuple[str, ...] = ()
    #: Whether :meth:`load` reads ``{"dataset": datasets.Dataset, ...}`` sources (with options
    #: such as column names). When it does not, a dataset given as data is used as it is and
    #: must already be in the standard schema.
    reads_datasets: bool = False
    #: The file name endings (lower case, with the dot: ``(".png", ".jpg")``) of the files that
    #: :meth:`from_inputs` reads as one input each. ``lepton predict`` walks a folder for them;
    #: empty (the default) when an input is not a file (texts, vectors).
    input_extensions: tuple[str, ...] = ()

    @abstractmethod
    def load(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source (a mapping such as ``{"path": "digits/", "format": "folder"}``)
        into the standard schema. A ``DatasetDict`` carries the source's own splits.

        Bad records go to ``bad_records.add(file, row, reason)``, which raises a
        :class:`~lepton_platform.errors.DataError` naming them unless the user asked to skip.
        """

    def load_unlabelled(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source of unlabelled target inputs (domain adaptation): the input columns
        at least; any label there is dropped unread. The default reads it with :meth:`load`
        (a labelled source); a domain whose sources can come without labels (a CSV with no
        label column, a folder of images without class folders) overrides it to read those."""
        return self.load(source, bad_records=bad_records)

    @abstractmethod
    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        """Raw inputs for prediction (paths, strings, arrays) as a dataset with the input
        columns only; an input of another modality raises a ``DataError`` naming it."""

    @abstractmethod
    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        """A small synthetic dataset in the standard schema, for tests and the conformance
        suite (it need not be learnable)."""
