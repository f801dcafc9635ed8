from __future__ import annotations

import pytest

from trinity_lightning.data import atomic_open, atomic_write_json, data_root, dataset_dir


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    target = tmp_path / "labels.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("{half")
        raise RuntimeError("crash while writing")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]  # no temp file left behind


def test_data_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRINITY_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="TRINITY_DATA"):
        dataset_dir("nope")
    (tmp_path / "toy").mkdir()
    assert dataset_dir("toy") == tmp_path / "toy"
