"""Class hierarchies for the shared datasets: CIFAR-10 placed in the WordNet 3.0 noun tree, Fashion-MNIST's
coarse grouping.

The WordNet noun graph (``wordnet_nouns/wordnet30_nouns.tsv.gz`` in the shared data folder) is a DAG: a few
synsets have two hypernyms (``dog.n.01`` is a ``canine.n.02`` and a ``domestic_animal.n.01``). Like the
loader in its ``SOURCE.txt`` we follow the *first* hypernym, which gives a tree; then we keep only the internal
nodes that split the chosen classes (a chain ``feline -> carnivore -> placental`` with one branch collapses).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path

from trinity_lightning.active.partial_feedback.hierarchy import ClassHierarchy
from trinity_lightning.data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, DataFormatError, dataset_dir

#: CIFAR-10 class -> WordNet 3.0 synset (``automobile`` is a lemma of ``car.n.01``).
CIFAR10_SYNSETS: dict[str, str] = {
    "airplane": "airplane.n.01",
    "automobile": "car.n.01",
    "bird": "bird.n.01",
    "cat": "cat.n.01",
    "deer": "deer.n.01",
    "dog": "dog.n.01",
    "frog": "frog.n.01",
    "horse": "horse.n.01",
    "ship": "ship.n.01",
    "truck": "truck.n.01",
}

#: The coarse Fashion-MNIST grouping of its SOURCE.txt: tops {0,2,4,6}, bottoms {1}, dresses {3},
#: footwear {5,7,9}, bags {8}. One-class groups are the class itself.
FASHION_MNIST_GROUPS: dict[str, list[str]] = {
    "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "bottoms": ["Trouser"],
    "dresses": ["Dress"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "bags": ["Bag"],
}


def _read_wordnet(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``name -> offset``, ``offset -> name``, ``offset -> first hypernym offset`` (instances included)."""
    by_name: dict[str, str] = {}
    by_offset: dict[str, str] = {}
    hypernym: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        try:
            col = {name: header.index(name) for name in ("offset", "name", "hypernyms", "instance_hypernyms")}
        except ValueError as err:
            raise DataFormatError(f"missing column ({err})", source=path, line=1) from err
        for line_no, line in enumerate(handle, start=2):
            row = line.rstrip("\n").split("\t")
            if len(row) < len(header):
                raise DataFormatError(
                    f"expected {len(header)} tab-separated fields, got {len(row)}", source=path, line=line_no
                )
            offset, name = row[col["offset"]], row[col["name"]]
            by_name[name], by_offset[offset] = offset, name
            parents = (row[col["hypernyms"]] or row[col["instance_hypernyms"]]).split()
            if parents:
                hypernym[offset] = parents[0]
    return by_name, by_offset, hypernym


def wordnet_hierarchy(
    synsets: Mapping[str, str], path: str | Path | None = None, binarize: bool = True
) -> ClassHierarchy:
    """Place classes in the WordNet noun tree and keep only the internal nodes that split them.

    Args:
        synsets: ``class name -> synset name`` (e.g. ``{"dog": "dog.n.01"}``), in label-id order.
        path: the ``wordnet30_nouns.tsv.gz`` file; default: the shared ``wordnet_nouns`` dataset.
        binarize: split nodes with more than two children into balanced halves
            (see :meth:`ClassHierarchy.binarized`).

    Raises:
        ValueError: a synset name that WordNet does not know, or two classes mapped to one synset.
    """
    path = Path(path) if path is not None else dataset_dir("wordnet_nouns") / "wordnet30_nouns.tsv.gz"
    by_name, by_offset, hypernym = _read_wordnet(path)
    if len(set(synsets.values())) != len(synsets):
        raise ValueError(f"synsets: two classes share a synset: {dict(synsets)}")
    pairs: dict[str, str | None] = {}
    for cls, synset in synsets.items():
        if synset not in by_name:
            raise ValueError(f"synsets: {synset!r} (class {cls!r}) is not a WordNet 3.0 noun synset")
        node, offset = cls, by_name[synset]
        while True:  # walk to the root along first hypernyms
            parent_offset = hypernym.get(offset)
            parent = by_offset[parent_offset] if parent_offset is not None else None
            if node in pairs:
                break
            pairs[node] = parent
            if parent is None:
                break
            node, offset = parent, parent_offset  # type: ignore[assignment]
    for synset in synsets.values():  # a class's own synset may lie on another class's path (e.g. dog, puppy)
        if synset in pairs and synset not in synsets:
            raise ValueError(f"synsets: {synset!r} is an ancestor of another class; classes must be leaves")
    tree = ClassHierarchy(pairs, list(synsets)).compressed()
    return tree.binarized() if binarize else tree


def cifar10_hierarchy(path: str | Path | None = None, binarize: bool = True) -> ClassHierarchy:
    """CIFAR-10's ten classes in the WordNet noun tree (label ids in the official order).

    With ``binarize=False`` the tree is: ``object`` -> (``vehicle`` -> (``craft`` -> airplane, ship),
    (``motor_vehicle`` -> automobile, truck)), (``vertebrate`` -> bird, frog, (``placental`` ->
    (``carnivore`` -> cat, dog), (``ungulate`` -> deer, horse))) — exact names come from WordNet.
    Reads ``wordnet_nouns`` from the shared data folder unless ``path`` points at its TSV file.

    Example:
        >>> tree = cifar10_hierarchy()  # doctest: +SKIP
        >>> tree.classes[:3]  # doctest: +SKIP
        ['airplane', 'automobile', 'bird']
    """
    synsets = {name: CIFAR10_SYNSETS[name] for name in CIFAR10_CLASSES}
    return wordnet_hierarchy(synsets, path, binarize)


def fashion_mnist_hierarchy(binarize: bool = True, groups: Mapping[str, Sequence[str]] | None = None) -> ClassHierarchy:
    """Fashion-MNIST with its coarse grouping (tops, bottoms, dresses, footwear, bags).

    Example:
        >>> h = fashion_mnist_hierarchy(binarize=False)
        >>> h.composites
        ['tops', 'footwear']
    """
    groups = FASHION_MNIST_GROUPS if groups is None else groups
    pairs: list[tuple[str, str | None]] = [("clothing", None)]
    for group, members in groups.items():
        if len(members) == 1:
            pairs.append((members[0], "clothing"))
        else:
            pairs.append((group, "clothing"))
            pairs.extend((m, group) for m in members)
    tree = ClassHierarchy(pairs, FASHION_MNIST_CLASSES)
    return tree.binarized() if binarize else tree
