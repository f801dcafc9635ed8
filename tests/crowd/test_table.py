from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from trinity_lightning.crowd import AnnotationTable
from trinity_lightning.data import DataFormatError


def test_read_frame_maps_ids_to_contiguous_ints_and_back(toy):
    table = AnnotationTable.read(toy)
    assert (table.num_items, table.num_workers, table.num_classes, len(table)) == (8, 4, 3, 23)
    assert table.classes == ["a", "b", "c"] and list(table.worker_ids) == ["w1", "w2", "w3", "w4"]
    assert table.items.dtype == torch.int64 and int(table.items.max()) == 7
    back = table.to_frame(item="task").sort_values(["task", "worker"]).reset_index(drop=True)
    expected = toy.sort_values(["task", "worker"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back.astype(str), expected.astype(str))
    assert table.item_index(["t3", "nope"]).tolist() == [2, -1]
    assert table.annotations_per_item().tolist() == [3, 3, 3, 3, 4, 2, 3, 2]


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_read_files(tmp_path, toy, suffix):
    path = tmp_path / f"answers.{suffix}"
    if suffix == "csv":
        toy.to_csv(path, index=False)
    elif suffix == "tsv":
        toy.to_csv(path, sep="\t", index=False)
    elif suffix == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in toy.to_dict("records")) + "\n")
    else:
        toy.to_parquet(path)
    table = AnnotationTable.read(path)
    assert (table.num_items, table.num_workers, table.classes) == (8, 4, ["a", "b", "c"])


def test_read_hf_dataset_dict_and_tensors(toy):
    import datasets

    assert AnnotationTable.read(datasets.Dataset.from_pandas(toy)).num_items == 8
    assert AnnotationTable.read(toy.to_dict("list")).num_workers == 4
    table = AnnotationTable.from_tensors(torch.tensor([5, 5, 9]), torch.tensor([3, 7, 3]), torch.tensor([0, 2, 2]))
    assert list(table.item_ids) == [5, 9] and list(table.worker_ids) == [3, 7] and table.num_classes == 3


def test_missing_column_names_the_field(toy):
    with pytest.raises(DataFormatError, match="field 'label': missing column"):
        AnnotationTable.read(toy.drop(columns="label"))
    with pytest.raises(DataFormatError, match="field 'annotator'"):
        AnnotationTable.read(toy, worker="annotator")


def test_nan_names_line_in_a_file_and_row_in_memory(tmp_path, toy):
    toy.loc[4, "worker"] = None
    with pytest.raises(DataFormatError, match="row 4, field 'worker': value is missing"):
        AnnotationTable.read(toy)
    path = tmp_path / "a.csv"
    toy.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"a\.csv, line 6, field 'worker'"):
        AnnotationTable.read(path)


def test_unknown_label_and_out_of_range(toy):
    with pytest.raises(DataFormatError, match="row 2, field 'label': unknown label 'b'"):
        AnnotationTable.read(toy, classes=["a", "c"])
    with pytest.raises(DataFormatError, match=r"out of range \[0, 2\)"):
        AnnotationTable.from_tensors([0, 1], [0, 0], [1, 2], num_classes=2)
    with pytest.raises(DataFormatError, match="integer ids"):
        AnnotationTable.from_tensors(torch.tensor([0.0]), [0], [0])


def test_declared_class_nobody_used_is_kept(toy):
    table = AnnotationTable.read(toy, classes=["a", "b", "c", "d"])
    assert table.num_classes == 4 and int((table.labels == 3).sum()) == 0


def test_duplicates_error_keep_last_keep_all(toy):
    dup = pd.concat([toy, pd.DataFrame([("t2", "w1", "a")], columns=toy.columns)], ignore_index=True)
    message = r"row 23, field 'worker': duplicate \(item, worker\) pair \('t2', 'w1'\), first at row 3"
    with pytest.raises(DataFormatError, match=message):
        AnnotationTable.read(dup)
    last = AnnotationTable.read(dup, duplicates="keep_last")
    assert len(last) == 23 and last.dropped_duplicates == 1
    row = last.to_frame(item="task").query("task == 't2' and worker == 'w1'")
    assert row["label"].tolist() == ["a"]
    assert len(AnnotationTable.read(dup, duplicates="keep_all")) == 24
    with pytest.raises(ValueError, match="duplicates: expected one of"):
        AnnotationTable.read(toy, duplicates="drop")


def test_declared_items_exclude_and_report_unlabelled(toy):
    with pytest.warns(UserWarning, match="1 of the declared items have no annotation"):
        table = AnnotationTable.read(toy, items=["t0", *sorted(set(toy.task))])
    assert table.unlabelled_items == ["t0"] and table.num_items == 8
    with pytest.raises(DataFormatError, match="row 0, field 'task': unknown item 't1'"):
        AnnotationTable.read(toy, items=["t2"])


def test_worker_with_one_label_and_float_labels_from_csv():
    frame = pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "solo"], "label": [1.0, 0.0, 1.0]})
    table = AnnotationTable.read(frame)
    assert table.classes == [0, 1] and table.annotations_per_worker().tolist() == [1, 1, 1]


def test_empty_table_is_an_error():
    with pytest.raises(DataFormatError, match="empty"):
        AnnotationTable.read(pd.DataFrame({"task": [], "worker": [], "label": []}))


def test_large_integer_ids_use_the_hash_path():
    ids = np.array([10**12, 5, 10**12])
    table = AnnotationTable.read({"task": ids, "worker": [0, 0, 1], "label": [0, 1, 1]})
    assert list(table.item_ids) == [5, 10**12]


def test_infinite_values_and_misaligned_tensors_name_the_field():
    with pytest.raises(DataFormatError, match="row 1, field 'label': value inf is not finite"):
        AnnotationTable.read({"task": [1, 2], "worker": ["a", "a"], "label": [0.0, np.inf]})
    with pytest.raises(DataFormatError, match="field 'worker': has 1 values but item has 2"):
        AnnotationTable.from_tensors(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(DataFormatError, match="<tensors>, row 1, field 'label': label id -1 is negative"):
        AnnotationTable.from_tensors([0, 1], [0, 0], [1, -1])


def test_messages_show_plain_values_not_numpy_reprs():
    with pytest.raises(DataFormatError, match=r"unknown label 7; known: \[0, 1, 2\]$"):
        AnnotationTable.read({"task": [1, 2], "worker": ["a", "a"], "label": [0, 7]}, num_classes=3)
    with pytest.raises(DataFormatError, match=r"duplicate \(item, worker\) pair \(0, 1\), first at row 0"):
        AnnotationTable.from_tensors([0, 0], [1, 1], [0, 1])


def test_from_tensors_reports_items_nobody_labelled():
    with pytest.warns(UserWarning, match="3 of the declared items have no annotation"):
        table = AnnotationTable.from_tensors([0, 0, 3], [0, 1, 0], [1, 0, 1], num_items=5)
    assert table.unlabelled_items == [1, 2, 4] and list(table.item_ids) == [0, 3]
    with pytest.raises(DataFormatError, match="row 1, field 'item': unknown item 7"):
        AnnotationTable.from_tensors([0, 7], [0, 0], [1, 0], num_items=5)


def test_ids_from_every_reader_are_strings(tmp_path):
    frame = pd.DataFrame({"task": ["001", "1", "01", "1.0"], "worker": ["07", "7", "7", "7"], "label": [0, 1, 0, 1]})
    for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        path = tmp_path / f"ids{suffix}"
        if suffix == ".csv":
            path.write_text("task,worker,label\n001,07,0\n1,7,1\n01,7,0\n1.0,7,1\n")
        elif suffix == ".tsv":
            path.write_text("task\tworker\tlabel\n001\t07\t0\n1\t7\t1\n01\t7\t0\n1.0\t7\t1\n")
        elif suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_parquet(path)
        table = AnnotationTable.read(path)
        assert sorted(table.item_ids) == ["001", "01", "1", "1.0"], suffix
        assert sorted(table.worker_ids) == ["07", "7"], suffix
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text('{"task": 1, "worker": 7, "label": 0}\n{"task": 2, "worker": 7, "label": 1}\n')
    table = AnnotationTable.read(numbers)
    assert list(table.item_ids) == ["1", "2"] and list(table.worker_ids) == ["7"]


def test_declared_int_items_match_ids_read_from_a_file(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("task,worker,label\n0,a,0\n2,a,1\n")
    with pytest.warns(UserWarning, match="1 of the declared items have no annotation"):
        table = AnnotationTable.read(path, items=range(3), num_classes=2)
    assert list(table.item_ids) == [0, 2] and table.unlabelled_items == [1]
    path.write_text("task,worker,label\n0,a,0\n02,a,1\n")
    with pytest.raises(DataFormatError, match=r"line 3, field 'task': unknown item '02'"):
        AnnotationTable.read(path, items=range(3), num_classes=2)


def test_mixed_numbers_and_strings_are_normalised_with_a_warning():
    frame = pd.DataFrame(
        {"task": ["a", "b", "c"], "worker": ["w", "w", "v"], "label": pd.Series([1, "1", 2], dtype=object)}
    )
    with pytest.warns(UserWarning, match=r"column 'label' mixes numbers and strings \(e.g. 1 and '1'\)"):
        table = AnnotationTable.read(frame)
    assert table.classes == ["1", "2"] and table.labels.tolist() == [0, 0, 1]
    ids = pd.DataFrame({"task": pd.Series([1, "1", 2.0], dtype=object), "worker": ["w", "v", "w"], "label": [0, 1, 1]})
    with pytest.warns(UserWarning, match="column 'task' mixes numbers and strings"):
        table = AnnotationTable.read(ids)
    assert list(table.item_ids) == ["1", "2"]


def test_with_classes_declares_classes_nobody_used():
    table = AnnotationTable.read({"task": ["a", "b"], "worker": ["w", "w"], "label": [2, 2]})
    wider = table.with_classes([0, 1, 2])
    assert wider.num_classes == 3 and wider.labels.tolist() == [2, 2]
    assert table.with_classes(["0", "1", "2"]).labels.tolist() == [2, 2]  # CLI-style string classes
    with pytest.raises(ValueError, match=r"uses labels \[2\] that are not among \[0, 1\]"):
        table.with_classes([0, 1])
