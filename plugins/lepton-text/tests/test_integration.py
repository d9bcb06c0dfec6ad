"""Cross-domain transfer on real data: MiniLM features learned on Amazon phone reviews, tested on
Yelp restaurant reviews (and the other way round).

The shared data sits beside the project at ``../shared/data/sentiment_sentences`` (tab-separated
``sentence<TAB>0/1``, CRLF, no header, no quoting); the test skips when it is absent. The
classifier is a logistic regression on frozen, mean-pooled MiniLM features: fine-tuning MiniLM
on 1000 sentences takes minutes on a 2-core machine, and frozen features already show transfer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lepton_text.backbone import TextBackbone
from sklearn.linear_model import LogisticRegression

import lepton_platform as lp
from lepton_platform.data import prepare

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sentiment_sentences"
FILES = {"amazon": "amazon_cells_labelled.txt", "yelp": "yelp_labelled.txt"}


def features(backbone: TextBackbone, ds: object, cache: Path) -> np.ndarray:
    pre = backbone.preprocessor()
    prepared = prepare(ds, pre, cache=cache)  # type: ignore[arg-type]
    lengths = np.asarray(prepared["length"])
    order = np.argsort(-lengths, kind="stable")  # similar lengths together: little padding
    sampler = [order[i : i + 64].tolist() for i in range(0, len(order), 64)]
    out = np.zeros((len(prepared), backbone.feature_dim), dtype=np.float32)
    columns = list(pre.output_columns)
    backbone.eval()
    with torch.no_grad():
        for batch in sampler:
            rows = prepared.select_columns(columns)[batch]
            examples = [{c: rows[c][i] for c in columns} for i in range(len(batch))]
            out[batch] = backbone(**pre.collate(examples)).numpy()
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_sentiment_transfers_between_review_domains(tmp_path: Path, minilm_folder: Path) -> None:
    if not all((DATA / f).is_file() for f in FILES.values()):
        pytest.skip(f"the shared review data is absent ({DATA})")
    from lepton_platform.data import BadRecords

    domain = lp.create_domain("text")
    loaded = {
        name: domain.load({"path": str(DATA / file)}, bad_records=BadRecords())
        for name, file in FILES.items()
    }
    assert all(len(ds) == 1000 for ds in loaded.values())  # type: ignore[arg-type]
    backbone = lp.create_backbone("all-minilm-l6-v2", pretrained=str(minilm_folder))
    assert isinstance(backbone, TextBackbone)
    feats = {name: features(backbone, ds, tmp_path) for name, ds in loaded.items()}
    labels = {name: np.asarray(ds["label"]) for name, ds in loaded.items()}  # type: ignore[index]
    for source, target in (("amazon", "yelp"), ("yelp", "amazon")):
        classifier = LogisticRegression(max_iter=2000, C=1.0)
        classifier.fit(feats[source], labels[source])
        accuracy = float((classifier.predict(feats[target]) == labels[target]).mean())
        majority_class = int(np.bincount(labels[source]).argmax())
        baseline = float((labels[target] == majority_class).mean())  # 0.5: balanced data
        assert accuracy >= baseline + 0.2, (source, target, accuracy, baseline)
