"""Tree, collate_trees and the batched TreeLSTM: batched == node by node, any shapes, bad trees refused."""

from __future__ import annotations

import random

import pytest
import torch

from trinity_lightning.equations.treelstm import TreeLSTM
from trinity_lightning.equations.trees import Tree, TreeError, check_arity, collate_trees

VOCAB = {label: i for i, label in enumerate(["add", "mul", "sin", "f3", "x", "y", "1", "2"])}
ARITY = {"add": 2, "mul": 2, "sin": 1, "f3": 3}


def random_tree(rng: random.Random, depth: int, max_arity: int = 3) -> Tree:
    if depth == 0 or rng.random() < 0.25:
        return Tree(rng.choice(["x", "y", "1", "2"]))
    label = rng.choice([name for name, k in ARITY.items() if k <= max_arity])
    return Tree(label, [random_tree(rng, depth - 1, max_arity) for _ in range(ARITY[label])])


def trees(seed: int, n: int, max_arity: int = 3) -> list[Tree]:
    rng = random.Random(seed)
    return [random_tree(rng, rng.randint(0, 6), max_arity) for _ in range(n)]


def test_tree_basics_and_sexpr_round_trip():
    t = Tree.from_sexpr("(add (sin x) (mul y 2))", ARITY)
    assert t.height() == 2 and t.size() == 6
    assert t.prefix() == ["add", "sin", "x", "mul", "y", "2"]
    assert Tree.from_sexpr(t.sexpr()) == t and hash(Tree.from_sexpr(t.sexpr())) == hash(t)
    assert t.replace((1, 0), Tree("x")).sexpr() == "(add (sin x) (mul x 2))"
    assert t.sexpr() == "(add (sin x) (mul y 2))"  # replace copies
    assert [p for p, _ in t.subtrees()] == [(), (0,), (0, 0), (1,), (1, 0), (1, 1)]


def test_collate_orders_nodes_by_height_with_padded_children():
    batch = collate_trees([Tree.from_sexpr("(add (sin x) y)"), Tree("2")], VOCAB)
    assert batch.levels == [(0, 3), (3, 4), (4, 5)]
    assert batch.heights.tolist() == [2, 0] and batch.roots.tolist() == [4, 2]
    for node in range(batch.num_nodes):  # every child precedes its parent; pads point at the zero row N
        k = int(batch.num_children[node])
        assert (batch.children[node, :k] < node).all() and (batch.children[node, k:] == batch.num_nodes).all()
    assert batch.values.isnan().sum() == 4 and batch.values[batch.labels == VOCAB["2"]].tolist() == [2.0]


@pytest.mark.parametrize("cell", ["childsum", "nary", "treenn"])
@pytest.mark.parametrize("node_types", [1, 4])
def test_batched_equals_node_by_node(cell, node_types):
    torch.manual_seed(0)
    forest = trees(seed=1, n=40)
    batch = collate_trees(forest, VOCAB)
    lstm = TreeLSTM(5, 7, cell=cell, arity=3, node_types=node_types)
    x = torch.randn(batch.num_nodes, 5, requires_grad=True)
    types = (batch.labels % node_types) if node_types > 1 else None
    h, c = lstm(batch, x, types)
    h_ref, c_ref = lstm(batch, x, types, schedule="node")
    assert len(set(batch.heights.tolist())) > 3  # different shapes in one batch
    torch.testing.assert_close(h, h_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-6, rtol=0)
    grads = torch.autograd.grad(h[batch.roots].sum(), [x, lstm.weight_h])
    grads_ref = torch.autograd.grad(h_ref[batch.roots].sum(), [x, lstm.weight_h])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-5)


def test_batched_equals_one_tree_at_a_time():
    torch.manual_seed(0)
    forest = trees(seed=2, n=12, max_arity=2)
    embed = torch.nn.Embedding(len(VOCAB), 6)
    lstm = TreeLSTM(6, 5, cell="nary", arity=2, node_types=3)
    batch = collate_trees(forest, VOCAB)
    h, _ = lstm(batch, embed(batch.labels), batch.labels % 3)
    for k, tree in enumerate(forest):
        one = collate_trees([tree], VOCAB)
        h1, _ = lstm(one, embed(one.labels), one.labels % 3)
        torch.testing.assert_close(h[batch.roots[k]], h1[one.roots[0]], atol=1e-6, rtol=0)


def test_childsum_matches_the_hand_written_equations():
    torch.manual_seed(0)
    lstm = TreeLSTM(3, 4, cell="childsum")
    batch = collate_trees([Tree.from_sexpr("(f3 x y 1)")], VOCAB)
    x = torch.randn(4, 3)
    h, c = lstm(batch, x)
    W, U, b = lstm.weight_x[0], lstm.weight_h[0], lstm.bias[0]
    leaves_h, leaves_c = h[:3], c[:3]
    i, o, u = (x[3] @ W + leaves_h.sum(0) @ U + b).split(4)
    f = torch.sigmoid(x[3] @ lstm.weight_fx[0] + lstm.bias_f[0] + leaves_h @ lstm.weight_fh[0])
    c_root = torch.sigmoid(i) * torch.tanh(u) + (f * leaves_c).sum(0)
    torch.testing.assert_close(c[3], c_root)
    torch.testing.assert_close(h[3], torch.sigmoid(o) * torch.tanh(c_root))


def test_cycles_shared_nodes_and_arity_mismatch_are_refused():
    a = Tree("add", [Tree("x"), Tree("y")])
    a.children.append(a)
    with pytest.raises(TreeError, match="cycle: node 'add' is its own ancestor"):
        collate_trees([a], VOCAB)
    leaf = Tree("x")
    with pytest.raises(TreeError, match=r"tree 1: shared node: 'x' .* copy the subtree"):
        collate_trees([Tree("x"), Tree("add", [leaf, leaf])], VOCAB)
    with pytest.raises(TreeError, match="arity mismatch: 'sin' takes 1 child"):
        check_arity(Tree.from_sexpr("(sin x y)"), ARITY)
    with pytest.raises(TreeError, match="at most 2"):
        collate_trees([Tree.from_sexpr("(f3 x y 1)")], VOCAB, max_children=2)
    batch = collate_trees([Tree.from_sexpr("(f3 x y 1)")], VOCAB)
    with pytest.raises(TreeError, match=r"label id 3\) has 3 children but the 'nary' cell takes at most 2"):
        TreeLSTM(2, 2, cell="nary", arity=2)(batch, torch.zeros(4, 2))
    with pytest.raises(TreeError, match="tree 0: unknown label 'z'"):
        collate_trees([Tree("z")], VOCAB)


def test_from_parents_and_sexpr_errors():
    assert Tree.from_parents(["sin", "x"], [-1, 0]).sexpr() == "(sin x)"
    with pytest.raises(TreeError, match="exactly one root"):
        Tree.from_parents(["x", "y"], [-1, -1])
    with pytest.raises(TreeError, match="not connected to the root"):
        Tree.from_parents(["r", "a", "b"], [-1, 2, 1])
    with pytest.raises(TreeError, match="its own parent"):
        Tree.from_parents(["r", "a"], [-1, 1])
    for text, message in [("(add x", "unclosed"), ("(add x))", "trailing text at character 8"), ("()", "label")]:
        with pytest.raises(TreeError, match=message):
            Tree.from_sexpr(text)
    with pytest.raises(TreeError, match="non-empty string"):
        Tree("a b")


def test_matches_pytorch_tree_lstm_with_the_same_weights():
    treelstm = pytest.importorskip("treelstm")
    torch.manual_seed(0)
    anchor = treelstm.TreeLSTM(3, 4)
    ours = TreeLSTM(3, 4, cell="childsum")
    with torch.no_grad():
        ours.weight_x[0] = anchor.W_iou.weight.T
        ours.bias[0] = anchor.W_iou.bias
        ours.weight_h[0] = anchor.U_iou.weight.T
        ours.weight_fx[0] = anchor.W_f.weight.T
        ours.bias_f[0] = anchor.W_f.bias
        ours.weight_fh[0] = anchor.U_f.weight.T
    # (add (sin x) y) with the anchor's node numbering 0=add, 1=sin, 2=x, 3=y
    adjacency = [[0, 1], [0, 3], [1, 2]]
    node_order, edge_order = treelstm.calculate_evaluation_orders(adjacency, 4)
    x = torch.randn(4, 3)
    h_anchor, _ = anchor(x, torch.tensor(node_order), torch.tensor(adjacency), torch.tensor(edge_order))
    batch = collate_trees([Tree.from_sexpr("(add (sin x) y)")], {"add": 0, "sin": 1, "x": 2, "y": 3})
    h, _ = ours(batch, x[batch.labels])
    torch.testing.assert_close(h[batch.roots[0]], h_anchor[0], atol=1e-6, rtol=0)


def test_runs_on_cuda_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    batch = collate_trees(trees(seed=3, n=8), VOCAB).to("cuda")
    lstm = TreeLSTM(4, 4, cell="childsum", node_types=2).cuda()
    h, _ = lstm(batch, torch.randn(batch.num_nodes, 4, device="cuda"), batch.labels % 2)
    assert h.is_cuda
