"""ClassHierarchy: construction, validation errors, binarization, question masks, WordNet/Fashion-MNIST trees."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import require_dataset
from trinity_lightning.active.partial_feedback import (
    ClassHierarchy,
    binary_search_costs,
    cifar10_hierarchy,
    fashion_mnist_hierarchy,
    wordnet_hierarchy,
)
from trinity_lightning.data import DataFormatError

PARENTS = {
    "cat": "mammal",
    "dog": "mammal",
    "mammal": "animal",
    "bird": "animal",
    "car": "vehicle",
    "truck": "vehicle",
    "animal": None,
    "vehicle": None,
}


def test_parent_map_structure_and_masks():
    h = ClassHierarchy(PARENTS, classes=["cat", "dog", "bird", "car", "truck"])
    assert h.root == "(all)"  # two top-level nodes are joined under an implicit root
    assert h.composites == ["animal", "mammal", "vehicle"]
    assert h.leaves_under("animal") == ["cat", "dog", "bird"]
    masks = h.question_masks()
    assert masks.shape == (8, 5)
    assert masks[0].tolist() == [True, True, True, False, False]
    assert masks[3:].equal(torch.eye(5, dtype=torch.bool))  # atomic classes come last, in label order
    assert h.question_masks(include_classes=False).shape == (3, 5)
    assert h.depth("cat") == 3


def test_nested_and_json_round_trip(tmp_path):
    nested = ClassHierarchy.from_nested(
        {"animal": {"mammal": ["cat", "dog"], "bird": None}, "vehicle": ["car", "truck"]}
    )
    assert nested.classes == ["cat", "dog", "bird", "car", "truck"]
    path = tmp_path / "h.json"
    path.write_text(json.dumps(nested.to_dict()))
    again = ClassHierarchy.from_json(path)
    assert again.classes == nested.classes
    assert again.question_masks().equal(nested.question_masks())
    path.write_text(json.dumps({"tree": {"a": ["x", "y"]}, "classes": ["y", "x"]}))
    assert ClassHierarchy.from_json(path).classes == ["y", "x"]


@pytest.mark.parametrize(
    ("parents", "classes", "match"),
    [
        ({"a": "b", "b": "c", "c": "a", "x": None}, None, "cycle a -> b -> c -> a|cycle b -> c -> a -> b|cycle"),
        ({"a": "a"}, None, "its own parent"),
        ([("cat", "mammal"), ("cat", "pet"), ("mammal", None), ("pet", None)], None, "under two parents"),
        ({"cat": "animal", "dog": "animal"}, ["cat", "dog", "fish"], "'fish' does not appear"),
        ({"cat": "animal", "dog": "animal"}, ["cat"], r"leaves \['dog'\] are not in classes"),
        ({"cat": "animal", "dog": "animal"}, ["animal", "cat", "dog"], "must be leaves"),
        ({"cat": "animal", "dog": "animal"}, ["cat", "cat"], "duplicate"),
    ],
)
def test_invalid_hierarchies_raise_clear_errors(parents, classes, match):
    with pytest.raises(ValueError, match=match):
        ClassHierarchy(parents, classes)


def test_nested_leaf_twice_and_bad_json(tmp_path):
    with pytest.raises(ValueError, match="appears twice"):
        ClassHierarchy.from_nested({"animal": ["cat"], "pet": ["cat"]})
    bad = tmp_path / "bad.json"
    bad.write_text('{"parents": {"a": "b",}}')
    with pytest.raises(DataFormatError, match="line 1"):
        ClassHierarchy.from_json(bad)
    bad.write_text('{"nodes": {}}')
    with pytest.raises(DataFormatError, match="'parents' or a 'tree'"):
        ClassHierarchy.from_json(bad)
    bad.write_text('{"parents": [["a", "b"], ["a", "c"]]}')
    with pytest.raises(DataFormatError, match=r"field 'parents'.*two parents"):
        ClassHierarchy.from_json(bad)


def test_binarized_is_binary_and_balanced():
    flat = ClassHierarchy.from_nested({f"c{i}": None for i in range(8)})
    b = flat.binarized()
    assert b.is_binary() and b.classes == flat.classes
    assert len(b.composites) == 6  # 8 leaves -> 7 internal nodes, minus the root
    assert binary_search_costs(b.question_masks()).tolist() == [3] * 8  # Huffman = perfectly balanced


def test_compressed_drops_single_child_chains():
    h = ClassHierarchy(
        {"cat": "feline", "feline": "carnivore", "dog": "carnivore", "carnivore": "animal", "animal": "entity"}
    ).compressed()
    assert h.root == "carnivore" and h.composites == []


def test_fashion_mnist_grouping():
    h = fashion_mnist_hierarchy(binarize=False)
    assert h.composites == ["tops", "footwear"]
    assert h.leaves_under("tops") == ["T-shirt/top", "Pullover", "Coat", "Shirt"]
    b = fashion_mnist_hierarchy()
    assert b.is_binary()
    costs = binary_search_costs(b.question_masks())
    assert costs.float().mean() == pytest.approx(3.4)  # Huffman over (4, 3, 1, 1, 1) leaves, then within groups


def test_cifar10_wordnet_tree():
    require_dataset("wordnet_nouns")
    h = cifar10_hierarchy(binarize=False)
    assert h.root == "whole.n.02"
    assert set(h.composites) == {
        "vehicle.n.01",
        "craft.n.02",
        "motor_vehicle.n.01",
        "vertebrate.n.01",
        "placental.n.01",
        "carnivore.n.01",
        "ungulate.n.01",
    }
    assert h.leaves_under("carnivore.n.01") == ["cat", "dog"]
    assert h.leaves_under("vehicle.n.01") == ["airplane", "automobile", "ship", "truck"]
    b = cifar10_hierarchy()
    assert b.is_binary()
    assert binary_search_costs(b.question_masks()).tolist() == [3, 3, 3, 4, 4, 4, 3, 4, 3, 3]
    with pytest.raises(ValueError, match="not a WordNet"):
        wordnet_hierarchy({"x": "no_such_thing.n.01", "dog": "dog.n.01"})
    with pytest.raises(ValueError, match="ancestor of another class"):
        wordnet_hierarchy({"dog": "dog.n.01", "animal": "animal.n.01"})
