"""Preprocessing through datasets.map: the cache is reused by a new process, and only then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from lepton_platform.data import prepare
from lepton_platform.errors import DataError
from lepton_platform.models import Preprocessor

# A preprocessor and a dataset built the same way in every process; transform appends one line
# per batch to the calls file, so the parent sees whether a process redid the work. The
# preprocessor has Preprocessor's interface without subclassing it, so that these processes need
# not import torch (which only makes them slower); the in-process test below uses the real ABC.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from collections.abc import Mapping, Sequence
    from typing import Any

    import datasets

    from lepton_platform.data import prepare


    class Scale:
        input_columns = ("x",)
        output_columns = ("scaled",)

        def __init__(self, factor: float, calls: str) -> None:
            self.factor = factor
            self.calls = calls  # not part of the config: it does not change the output

        def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            with open(self.calls, "a") as handle:
                handle.write(f"{len(batch['x'])}\\n")
            return {"scaled": [v * self.factor for v in batch["x"]]}

        def config(self) -> dict[str, Any]:
            return {"factor": self.factor}

        def fingerprint(self) -> str:
            return json.dumps(self.config(), sort_keys=True)


    factor, rows, calls = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    features = datasets.Features({
        "x": datasets.Value("float64"),
        "note": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["a", "b"]),
        "domain": datasets.Value("string"),
        "group": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_dict(
        {"x": [float(i) for i in range(rows)], "note": ["raw"] * rows,
         "label": [i % 2 for i in range(rows)], "domain": ["d"] * rows,
         "group": [f"g{i // 2}" for i in range(rows)]},
        features=features,
    )
    out = prepare(ds, Scale(factor, calls), batch_size=4)
    print(json.dumps({
        "columns": sorted(out.column_names),
        "scaled": out["scaled"][:],
        "label": out["label"][:],
        "label_feature": str(out.features["label"]),
        "group": out["group"][:3],
        "cache_files": [f["filename"] for f in out.cache_files],
        "torch": "torch" in sys.modules,
    }))
    """
)


def run(tmp_path: Path, factor: float, rows: int) -> dict[str, Any]:
    script = tmp_path / "prep.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, LEPTON_CACHE_DIR=str(tmp_path / "cache"), HF_DATASETS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(script), str(factor), str(rows), str(tmp_path / "calls.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def calls(tmp_path: Path) -> list[int]:
    path = tmp_path / "calls.txt"
    return [int(n) for n in path.read_text().split()] if path.exists() else []


def test_prepared_data_is_cached_across_processes(tmp_path: Path) -> None:
    first = run(tmp_path, 2.0, 10)
    assert calls(tmp_path) == [4, 4, 2]  # three batches of at most 4 rows
    assert first["columns"] == ["domain", "group", "label", "scaled"]  # raw x and note dropped
    assert first["scaled"] == [2.0 * i for i in range(10)]
    assert first["label"] == [i % 2 for i in range(10)]
    assert "ClassLabel" in first["label_feature"] and first["group"] == ["g0", "g0", "g1"]
    assert first["torch"] is False
    (cache_file,) = first["cache_files"]
    assert Path(cache_file).parent == tmp_path / "cache" / "prepared"

    second = run(tmp_path, 2.0, 10)  # a new process, same data and preprocessing
    assert calls(tmp_path) == [4, 4, 2]  # transform was not called again
    assert second == first


class Square(Preprocessor):
    """Squares ``x`` into ``x`` (an output of the same name as an input column is kept)."""

    input_columns = ("x",)
    output_columns = ("x",)

    def __init__(self) -> None:
        self.batches = 0

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        self.batches += 1
        return {"x": [v * v for v in batch["x"]]}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([e["x"] for e in examples])}

    def config(self) -> dict[str, Any]:
        return {}


def test_prepare_in_process_keeps_outputs_and_reuses_its_cache(tmp_path: Path) -> None:
    def data() -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"x": [1.0, 2.0, 3.0], "text": ["a", "b", "c"], "label": [0, 1, 0]},
            features=datasets.Features(
                {
                    "x": datasets.Value("float64"),
                    "text": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["no", "yes"]),
                }
            ),
        )

    square = Square()
    out = prepare(data(), square, cache=tmp_path)
    assert sorted(out.column_names) == ["label", "x"] and out["x"][:] == [1.0, 4.0, 9.0]
    assert square.batches == 1
    again = prepare(data(), square, cache=tmp_path)  # a new Dataset object, same content
    assert square.batches == 1 and again["x"][:] == [1.0, 4.0, 9.0]
    assert len(list((tmp_path / "prepared").glob("*.arrow"))) == 1
    other_data = prepare(data().select([0, 1]), square, cache=tmp_path)
    assert square.batches == 2 and other_data["x"][:] == [1.0, 4.0]
    square.config = lambda: {"power": 2}  # type: ignore[method-assign]  # other preprocessing
    prepare(data(), square, cache=tmp_path)
    assert square.batches == 3
    assert len(list((tmp_path / "prepared").glob("*.arrow"))) == 3
    with pytest.raises(DataError, match=r"Square reads column\(s\) \['x'\] that the data lacks"):
        prepare(data().remove_columns("x"), square, cache=tmp_path)
