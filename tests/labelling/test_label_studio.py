"""Label Studio file formats without a server: config, tasks, export -> answer lines -> the campaign's oracle."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tests.labelling.conftest import write_queries
from trinity_lightning.rounds import FileOracle, Query
from trinity_lightning.rounds.label_studio import (
    answers_from_export,
    import_export,
    labeling_config,
    to_tasks,
    write_tasks,
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCE = ["Anna", "Smith", "visited", "New", "York"]


def test_configs_are_valid_xml_for_each_kind():
    ner = ET.fromstring(labeling_config(Query(0, "tags", {"tokens": ["a"]}, TAGS)))
    assert [e.get("value") for e in ner.iter("Label")] == ["PER", "LOC"]
    assert ner.find("Text").get("granularity") == "word"
    image = ET.fromstring(labeling_config(Query(0, "class", {"image": "x.png"}, ['say "hi"', "<b>"])))
    assert image.find("Choices").get("toName") == "image"
    assert [e.get("value") for e in image.iter("Choice")] == ['say "hi"', "<b>"]  # escaped, read back verbatim
    yesno = ET.fromstring(labeling_config(Query(0, "yesno", {"text": "t"}, question="Is this a dog?")))
    assert yesno.find("Header").get("value") == "$question"
    assert [e.get("value") for e in yesno.iter("Choice")] == ["yes", "no"]


def test_write_tasks_and_import_an_export_the_file_oracle_reads(tmp_path):
    q = write_queries(
        tmp_path,
        3,
        [
            {"index": 4, "kind": "tags", "example": {"tokens": SENTENCE}, "choices": TAGS},
            {"index": 9, "kind": "tags", "example": {"tokens": ["<script>", "[/]", "Rome"]}, "choices": TAGS},
        ],
    )  # fmt: skip
    tasks_file = write_tasks(q)
    tasks = json.loads(tasks_file.read_text())
    assert tasks[1]["data"] == {"text": "<script> [/] Rome", "trinity_index": 9, "trinity_round": 3,
                                "tokens": ["<script>", "[/]", "Rome"]}  # fmt: skip
    assert tasks_file.with_suffix(".xml").read_text().startswith("<View>")
    export = [
        {"id": 1, "data": tasks[0]["data"], "annotations": [
            {"completed_by": {"id": 2, "email": "ann@example.org"}, "result": [
                {"from_name": "label", "to_name": "text", "type": "labels",
                 "value": {"start": 0, "end": 10, "text": "Anna Smith", "labels": ["PER"]}},
                {"type": "labels", "value": {"start": 23, "end": 27, "text": "York", "labels": ["LOC"]}}]},
            {"completed_by": 3, "was_cancelled": True, "result": []}]},
        {"id": 2, "data": tasks[1]["data"], "annotations": [
            {"completed_by": 3, "result": [{"type": "labels", "value": {"start": 14, "end": 16, "labels": ["LOC"]}}]}]},
        {"id": 3, "data": {"trinity_index": 77, "text": "x"}, "annotations": []},
    ]  # fmt: skip
    written, problems = import_export(json.dumps(export), q)
    assert written == 2 and problems == ["task 2 (id 3): not queried"]
    answers = FileOracle(str(tmp_path), wait=False).collect(3)
    assert answers is not None
    assert answers.labels == [[1, 2, 0, 0, 3], [0, 0, 3]]  # "York" alone; a partial "Ro" snaps to "Rome"
    assert answers.workers == ["ann@example.org", "3"]


def test_class_and_yesno_exports_and_bad_annotations():
    queries = [
        Query(1, "class", {"text": "t"}, ["cat", "dog"]),
        Query(2, "yesno", question="Is this a dog?", question_id=5),
    ]
    assert to_tasks(queries, 1)[1]["data"]["question"] == "Is this a dog?"
    export = [
        {"data": {"trinity_index": 1}, "annotations": [{"completed_by": 1, "result": [
            {"type": "choices", "value": {"choices": ["dog"]}}]}]},
        {"data": {"trinity_index": 2}, "annotations": [
            {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["no"]}}]},
            {"completed_by": 2, "result": [{"type": "choices", "value": {"choices": ["maybe"]}}]},
            {"completed_by": 4, "result": []}]},
    ]  # fmt: skip
    lines, problems = answers_from_export(export, queries)
    assert lines == [
        {"index": 1, "label": "dog", "worker": "1"},
        {"index": 2, "label": "no", "question_id": 5, "worker": "1"},
    ]
    assert problems == [
        "task 1 (index 2): expected yes or no, got 'maybe'",
        "task 1 (index 2): expected one choice, got []",
    ]


class _FakeLabelStudio:
    """The three label-studio-sdk calls the oracle makes, in memory (a real server is not started here)."""

    def __init__(self):
        self.configs, self.tasks = {}, {}
        outer = self

        class Projects:
            def create(self, title, label_config):
                pid = len(outer.configs) + 1
                outer.configs[pid] = label_config
                return type("Project", (), {"id": pid})()

            def import_tasks(self, id, request):
                outer.tasks.setdefault(id, []).extend({"id": n, **t, "annotations": []} for n, t in enumerate(request))

        class Tasks:
            def list(self, project, fields):
                assert fields == "all"
                return list(outer.tasks.get(project, []))

        self.projects, self.tasks_api = Projects(), Tasks()


def test_label_studio_oracle_round_trip_with_an_in_memory_sdk(tmp_path):
    from trinity_lightning.rounds.label_studio import LabelStudioOracle

    fake = _FakeLabelStudio()
    client = type("Client", (), {"projects": fake.projects, "tasks": fake.tasks_api})()
    oracle = LabelStudioOracle("http://127.0.0.1:8080", "token", choices=["cat", "dog"], directory=str(tmp_path))
    oracle._client = client
    items = [Query(5, "class", {"text": "meow"}), Query(6, "class", {"text": "woof"})]
    oracle.query(1, items)
    assert '<Choice value="dog"/>' in fake.configs[1]
    assert oracle.pending_indices(1) == [5, 6] and oracle.collect(1) is None
    restarted = LabelStudioOracle("http://127.0.0.1:8080", "token", choices=["cat", "dog"], directory=str(tmp_path))
    restarted._client = client
    restarted.query(1, items)  # after a restart: nothing pushed twice
    assert len(fake.configs) == 1 and len(fake.tasks[1]) == 2 and restarted.pending_indices(1) == [5, 6]
    for task, choice in zip(fake.tasks[1], ["cat", "dog"]):
        task["annotations"].append({"completed_by": 9, "result": [{"type": "choices", "value": {"choices": [choice]}}]})
    answers = restarted.collect(1)
    assert (
        answers is not None and answers.indices == [5, 6] and answers.labels == [0, 1] and answers.workers == ["9", "9"]
    )
