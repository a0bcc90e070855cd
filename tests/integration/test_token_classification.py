"""Token classification through the real client on a real server: a CoNLL upload with its tagging statistics, and a
bad file refused naming its line with nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tagging_fixtures import conll_text, ner_sentences


def test_conll_upload_through_the_server(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "train.conll"
    path.write_text(conll_text(ner_sentences(20)))
    dataset = client.upload_dataset(path)
    assert dataset.task == 4 and dataset.num_rows == 20
    assert list(dataset.labels) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert dataset.tagging.sentences == 20 and dataset.tagging.scheme == "IOB2"
    assert client.get_dataset(dataset.id).tagging.tokens == dataset.tagging.tokens
    before = len(client.list_datasets().datasets)
    path.write_text("Ada B-PER\nwrote\n")
    with pytest.raises(Exception) as caught:
        client.upload_dataset(path)
    assert "line 2" in str(caught.value)
    assert len(client.list_datasets().datasets) == before
