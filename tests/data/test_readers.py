from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from trinity_lightning.data import (
    DataFormatError,
    load_tensors,
    read_conll,
    read_table,
    read_tagged_sentences,
)


@pytest.fixture
def table() -> dict:
    rng = np.random.default_rng(0)
    return {
        "a": rng.normal(size=6).round(4).tolist(),
        "b": rng.normal(size=6).round(4).tolist(),
        "label": [0, 1, 2, 1, 0, 2],
    }


def test_hf_dataset_and_local_files_give_identical_tensors(tmp_path, table):
    datasets = pytest.importorskip("datasets")
    hf = load_tensors(datasets.Dataset.from_dict(table), num_classes=3)
    frame = pd.DataFrame(table)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    np.savez(tmp_path / "t.npz", **{k: np.asarray(v) for k, v in table.items()})
    for suffix in ("csv", "tsv", "parquet", "jsonl", "npz"):
        local = load_tensors(tmp_path / f"t.{suffix}", num_classes=3)
        assert torch.equal(local.features, hf.features), suffix
        assert torch.equal(local.labels, hf.labels), suffix
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(table)})
    assert torch.equal(load_tensors(dd).features, hf.features)
    assert hf.features.shape == (6, 2) and hf.labels.tolist() == table["label"]


def test_sequence_columns_are_flattened_and_ragged_rows_named(tmp_path):
    rows = [{"pixels": [1, 2, 3], "label": 0}, {"pixels": [4, 5, 6], "label": 1}, {"pixels": [7, 8], "label": 0}]
    path = tmp_path / "seq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=r"seq.jsonl, line 3, field 'pixels': ragged sequence") as err:
        load_tensors(path)
    assert err.value.line == 3 and err.value.field == "pixels"
    good = load_tensors({"pixels": [[1, 2], [3, 4]], "label": [0, 1]}, shape=(1, 2))
    assert good.features.shape == (2, 1, 2)


def test_bad_csv_names_line_and_field(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,y,label\n0.1,0.2,0\n0.3,0.4,1\n\n0.5,oops,1\n")
    with pytest.raises(DataFormatError, match=r"bad.csv, line 5, field 'y': not a number"):
        load_tensors(path)
    path.write_text("x,y,label\n0.1,0.2,0\n0.3,,1\n")
    with pytest.raises(DataFormatError, match=r"line 3, field 'y': feature is nan"):
        load_tensors(path)
    path.write_text("x,y,label\n0.1,0.2,0\n0.3,0.4,7\n")
    with pytest.raises(DataFormatError, match=r"line 3, field 'label': label id 7 is out of range \[0, 3\)"):
        load_tensors(path, num_classes=3)
    with pytest.raises(DataFormatError, match=r"field 'target': missing label column"):
        load_tensors(path, label="target")
    with pytest.raises(DataFormatError, match=r"field 'z': missing feature column"):
        load_tensors(path, features=["x", "z"])
    path.write_text("x,label\n0.1,cat\n0.2,dog\n0.3,cow\n")
    assert load_tensors(path, classes=["cat", "dog", "cow"]).labels.tolist() == [0, 1, 2]
    with pytest.raises(DataFormatError, match=r"line 4, field 'label': unknown label 'cow'"):
        load_tensors(path, classes=["cat", "dog"])
    path.write_text("x,label\n0.1,1\n0.2,1,3\n")
    with pytest.raises(DataFormatError, match=r"line 3, field 'columns': expected 2 fields \(as many as .*, got 3"):
        read_table(path)


def test_malformed_jsonl_and_unknown_suffix(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1, "label": 0}\n{"a": 2, label: 1}\n')
    with pytest.raises(DataFormatError, match=r"x.jsonl, line 2: not valid JSON"):
        read_table(path)
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(DataFormatError, match="unknown file type"):
        read_table(tmp_path / "x.xlsx")
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "missing.csv")


def test_in_memory_errors_name_the_row():
    with pytest.raises(DataFormatError, match=r"row 1, field 'a': feature is nan"):
        load_tensors({"a": [1.0, float("nan")], "label": [0, 1]})


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_reader(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(CONLL)
    sents = read_conll(path)
    assert [s.tokens for s in sents] == [("EU", "rejects", "German"), ("Peter", "Blackburn")]
    assert sents[1].tags == ("B-PER", "I-PER")
    assert read_tagged_sentences(path) == sents


def test_bad_conll_names_line_and_field(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(CONLL.replace("rejects VBZ B-VP O", "rejects VBZ O"))
    with pytest.raises(DataFormatError, match=r"bad.txt, line 4, field 'columns': expected 4 columns, got 3"):
        read_conll(path)
    path.write_text(CONLL.replace("B-MISC", "B-FOO"))
    with pytest.raises(DataFormatError, match=r"line 5, field 'tag': unknown tag 'B-FOO'"):
        read_conll(path, tag_set=["O", "B-ORG", "B-MISC", "B-PER", "I-PER"])


def test_hf_tagging_dataset_matches_conll(tmp_path):
    datasets = pytest.importorskip("datasets")
    names = ["O", "B-PER", "I-PER", "B-ORG", "B-MISC"]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    hf = datasets.Dataset.from_dict(
        {"tokens": [["EU", "rejects", "German"], ["Peter", "Blackburn"]], "ner_tags": [[3, 0, 4], [1, 2]]},
        features=features,
    )
    path = tmp_path / "a.txt"
    path.write_text(CONLL)
    assert read_tagged_sentences(hf) == read_conll(path)
    with pytest.raises(DataFormatError, match=r"row 0, field 'ner_tags': ragged sequence"):
        read_tagged_sentences({"tokens": [["a", "b"]], "ner_tags": [["O"]]})


def test_readers_split_into_tables_and_conll_keeps_every_public_name() -> None:
    import trinity_lightning.data as data
    from trinity_lightning.data import conll, readers, tables

    assert data.read_table is tables.read_table is readers.read_table
    assert data.load_tensors is tables.load_tensors and data.ArrayDataset is tables.ArrayDataset
    assert data.read_conll is conll.read_conll is readers.read_conll
    assert data.TaggedSentence is conll.TaggedSentence and data.read_tagged_sentences is conll.read_tagged_sentences


@pytest.mark.parametrize("bad_line", [2, 3, 4])
def test_a_row_with_an_extra_field_is_blamed_on_its_own_line(tmp_path, bad_line):
    """Issue 14 item 16: pandas turned an extra field on line 2 into an index and blamed line 3, 'label'."""
    rows = ["task,worker,label", "1,a,0", "2,b,1", "3,c,1"]
    rows[bad_line - 1] += ",extra"
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=rf"ragged.csv, line {bad_line}, field 'columns': expected 3 fields"):
        read_table(path)


def test_quoted_newlines_do_not_shift_the_reported_line(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('task,note\n1,"two\nlines"\n2,x,y\n')
    with pytest.raises(DataFormatError, match=r"line 4, field 'columns'"):
        read_table(path)


def test_text_columns_keep_ids_exactly_as_written(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("task,worker,label\n001,7,1\n1,07,1\n1.0,7.0,0\n")
    frame = read_table(path, text_columns=("task", "worker"))
    assert frame["task"].tolist() == ["001", "1", "1.0"] and frame["worker"].tolist() == ["7", "07", "7.0"]
    assert frame["label"].tolist() == [1, 1, 0]
    jsonl = tmp_path / "ids.jsonl"
    jsonl.write_text('{"task": 1, "worker": "07"}\n{"task": "001", "worker": 7}\n')
    assert read_table(jsonl, text_columns=("task", "worker"))["task"].tolist() == ["1", "001"]
    parquet = tmp_path / "ids.parquet"
    pd.DataFrame({"task": [1, 2], "worker": ["a", "b"]}).to_parquet(parquet)
    assert read_table(parquet, text_columns=("task",))["task"].tolist() == ["1", "2"]


def test_invalid_utf8_and_bom_in_tables(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"task,worker,label\nt1,w1,yes\nt2,Jos\xe9,no\n")
    with pytest.raises(DataFormatError, match=r"latin1.csv, line 3, field 'worker': not valid UTF-8 \(byte 0xe9"):
        read_table(path)
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"a": 1}\n{"a": "\xe9"}\n')
    with pytest.raises(DataFormatError, match=r"latin1.jsonl, line 2, field 'column 2': not valid UTF-8"):
        read_table(jsonl)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    assert read_table(bom)["a"].tolist() == [1]
    bom_csv = tmp_path / "bom.csv"
    bom_csv.write_bytes(b"\xef\xbb\xbftask,label\n1,0\n")
    assert list(read_table(bom_csv).columns) == ["task", "label"]
