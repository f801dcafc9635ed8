"""LDA moments from sparse document-term counts, accumulated batch by batch, and whitening.

Everything a pass over the corpus gathers is a *sum over documents* (so shards add up and DDP all-reduces them):
for a basis ``B`` (V × p, orthonormal columns) and each document's counts ``c`` (length ``l``), with
``y = Bᵀc``, ``s₂ = 1/(l(l−1))`` and ``s₃ = 1/(l(l−1)(l−2))`` (Anandkumar et al., unbiased per-document estimates):

* ``m1 = Σ c/l``, ``g2 = Σ s₂ c``, ``g3 = Σ s₃ c`` (V each);
* ``z2 = Σ s₂ c yᵀ``, ``z3 = Σ s₃ c yᵀ`` (V × p): the products that give ``E[x₁⊗x₂]·B`` (the range-finder sketch)
  and the diagonal corrections of the third moment;
* ``s2 = Σ s₂ y yᵀ`` (p × p) and ``a1 = Σ s₃ y⊗y⊗y`` (p × p × p).

No V × V or V × V × V array is ever formed; the whitened third moment is k × k × k. :func:`whiten` turns the sums
into the whitening map and the whitened tensor ``T = M3(W, W, W)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["MomentSums", "SparseBatch", "Whitening", "next_basis", "whiten", "whitening_only"]


@dataclass
class SparseBatch:
    """A batch of documents as a CSR matrix (``crow``, ``cols``, ``vals``; documents × vocabulary) plus the
    permutation ``perm`` that orders its non-zeros by term (column), so ``Xᵀ`` is a CSR matrix too
    (``t_crow``, ``vals[perm]`` with row ids ``rows[perm]``). Build one with
    :func:`~trinity_lightning.topics.readers.csr_to_batch`.

    Example:
        >>> import scipy.sparse as sp
        >>> from trinity_lightning.topics.readers import csr_to_batch
        >>> b = csr_to_batch(sp.csr_matrix([[3.0, 0.0, 1.0], [0.0, 4.0, 0.0]]))
        >>> b.lengths().tolist(), (b.X().to_dense() @ torch.ones(3, dtype=torch.float64)).tolist()
        ([4.0, 4.0], [4.0, 4.0])
    """

    crow: Tensor
    cols: Tensor
    vals: Tensor
    t_crow: Tensor
    perm: Tensor
    n_docs: int
    n_features: int

    @property
    def rows(self) -> Tensor:
        """Document (row) id of each non-zero."""
        return torch.repeat_interleave(torch.arange(self.n_docs, device=self.crow.device), self.crow.diff())

    def lengths(self) -> Tensor:
        """Number of words in each document of the batch."""
        cs = torch.cat([self.vals.new_zeros(1), self.vals.cumsum(0)])
        return cs[self.crow[1:]] - cs[self.crow[:-1]]

    def X(self, values: Tensor | None = None) -> Tensor:  # noqa: N802
        """The batch as a torch sparse CSR tensor (optionally with other ``values`` on the same pattern)."""
        v = self.vals if values is None else values
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.crow, self.cols, v, (self.n_docs, self.n_features))

    def XT(self, values: Tensor | None = None) -> Tensor:  # noqa: N802
        """The transpose (vocabulary × documents) as a sparse CSR tensor."""
        v = self.vals if values is None else values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.t_crow, self.rows[self.perm], v[self.perm], (self.n_features, self.n_docs)
            )

    def to(self, device: torch.device | str, dtype: torch.dtype) -> SparseBatch:
        """The batch on ``device`` with counts as ``dtype``."""
        return SparseBatch(
            self.crow.to(device),
            self.cols.to(device),
            self.vals.to(device, dtype),
            self.t_crow.to(device),
            self.perm.to(device),
            self.n_docs,
            self.n_features,
        )


def _weights(lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    n = lengths
    s1 = torch.where(n >= 1, 1.0 / n.clamp(min=1), torch.zeros_like(n))
    s2 = torch.where(n >= 2, 1.0 / (n * (n - 1)).clamp(min=1), torch.zeros_like(n))
    s3 = torch.where(n >= 3, 1.0 / (n * (n - 1) * (n - 2)).clamp(min=1), torch.zeros_like(n))
    return s1, s2, s3


@dataclass
class MomentSums:
    """Running sums of one pass over the corpus in the basis ``basis`` (see the module docstring).

    ``third=False`` skips the p × p × p sum (a range-finder pass). :meth:`add` takes a :class:`SparseBatch`;
    :meth:`tensors` / :meth:`from_tensors` expose the sums for an all-reduce.

    Example:
        >>> sums = MomentSums.empty(torch.eye(4, dtype=torch.float64), third=True)
        >>> import scipy.sparse as sp
        >>> from trinity_lightning.topics.readers import csr_to_batch
        >>> sums.add(csr_to_batch(sp.csr_matrix([[0.0, 2.0, 0.0, 1.0]])))
        >>> float(sums.n3), sums.a1.shape
        (1.0, torch.Size([4, 4, 4]))
    """

    basis: Tensor
    third: bool
    n1: Tensor
    n2: Tensor
    n3: Tensor
    m1: Tensor
    g2: Tensor
    g3: Tensor
    z2: Tensor
    z3: Tensor
    s2: Tensor
    a1: Tensor = field(default_factory=lambda: torch.zeros(0))

    @classmethod
    def empty(cls, basis: Tensor, third: bool = True) -> MomentSums:
        """Zero sums for ``basis`` (V × p)."""
        V, p = basis.shape

        def z(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=basis.dtype, device=basis.device)

        return cls(
            basis=basis,
            third=third,
            n1=z(),
            n2=z(),
            n3=z(),
            m1=z(V),
            g2=z(V),
            g3=z(V),
            z2=z(V, p),
            z3=z(V, p),
            s2=z(p, p),
            a1=z(p, p, p) if third else z(0),
        )

    def add(self, batch: SparseBatch) -> None:
        """Add one batch of documents to the sums."""
        b = batch.to(self.basis.device, self.basis.dtype)
        lengths = b.lengths()
        s1, s2, s3 = _weights(lengths)
        n, p = b.n_docs, self.basis.shape[1]
        Y = b.X() @ self.basis  # y = Bᵀc for every document
        self.n1 += (lengths >= 1).sum()
        self.n2 += (lengths >= 2).sum()
        self.n3 += (lengths >= 3).sum()
        # every V-side sum in one sparse product Xᵀ [s1, s2, s3, s2·Y, s3·Y]
        right = [s1[:, None], s2[:, None], s3[:, None], s2[:, None] * Y]
        if self.third:
            right.append(s3[:, None] * Y)
        out = b.XT() @ torch.cat(right, dim=1)
        self.m1 += out[:, 0]
        self.g2 += out[:, 1]
        self.g3 += out[:, 2]
        self.z2 += out[:, 3 : 3 + p]
        self.s2 += (s2[:, None] * Y).T @ Y
        if self.third:
            self.z3 += out[:, 3 + p :]
            YY = (Y[:, :, None] * Y[:, None, :]).reshape(n, p * p)
            self.a1 += ((s3[:, None] * Y).T @ YY).reshape(p, p, p)

    _SUMS = ("n1", "n2", "n3", "m1", "g2", "g3", "z2", "z3", "s2", "a1")

    def tensors(self) -> list[Tensor]:
        """The sums, in a fixed order (for an all-reduce)."""
        return [getattr(self, name) for name in self._SUMS]

    def load_tensors(self, values: list[Tensor]) -> None:
        """Replace the sums by ``values`` (the order of :meth:`tensors`)."""
        for name, value in zip(self._SUMS, values, strict=True):
            setattr(self, name, value)

    def m1_mean(self) -> Tensor:
        """``M1 = E[x₁]``."""
        return self.m1 / self.n1.clamp(min=1)

    def sketch(self, alpha0: float) -> Tensor:
        """``M2 · B`` (V × p): the randomized range finder's product, without a V × V matrix."""
        n2 = self.n2.clamp(min=1)
        M1 = self.m1_mean()
        e2b = self.z2 / n2 - (self.g2 / n2)[:, None] * self.basis
        return e2b - (alpha0 / (alpha0 + 1)) * M1[:, None] * (M1 @ self.basis)[None, :]


def next_basis(sketch: Tensor) -> Tensor:
    """Orthonormal basis of the range of ``sketch`` (V × p), by a QR factorisation."""
    q, _ = torch.linalg.qr(sketch)
    return q


@dataclass
class Whitening:
    """The whitening map ``W = B · U Λ^{-1/2}`` (V × k) and its pseudo-inverse transpose ``B · U Λ^{1/2}``."""

    basis: Tensor
    eigvecs: Tensor
    eigvals: Tensor
    tensor: Tensor

    @property
    def W(self) -> Tensor:  # noqa: N802
        """The V × k whitening matrix (``Wᵀ M2 W = I``)."""
        return self.basis @ (self.eigvecs / self.eigvals.sqrt())

    def unwhiten(self, v: Tensor) -> Tensor:
        """``(Wᵀ)⁺ v`` for the columns of ``v`` (k × r) -> V × r."""
        return self.basis @ ((self.eigvecs * self.eigvals.sqrt()) @ v)


def whitening_only(sums: MomentSums, k: int, alpha0: float) -> Whitening:
    """The whitening map alone (``tensor`` left empty), from any pass's second-moment sums: what the online
    tensor decomposition (:mod:`.online`) needs, since it never forms the whitened k × k × k tensor.

    Raises:
        ValueError: when ``M2`` restricted to the basis has fewer than ``k`` positive eigenvalues (``k`` larger
            than the whitening rank).

    Example:
        >>> import scipy.sparse as sp
        >>> from trinity_lightning.topics.readers import csr_to_batch
        >>> sums = MomentSums.empty(torch.eye(3, dtype=torch.float64), third=False)
        >>> sums.add(csr_to_batch(sp.csr_matrix([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 2.0]])))
        >>> w = whitening_only(sums, 2, alpha0=1.0)
        >>> w.W.shape, w.tensor.numel()
        (torch.Size([3, 2]), 0)
    """
    evecs, evals, _, _ = _second_moment_eigs(sums, k, alpha0)
    return Whitening(basis=sums.basis, eigvecs=evecs, eigvals=evals, tensor=sums.basis.new_zeros(0))


def _second_moment_eigs(sums: MomentSums, k: int, alpha0: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-``k`` eigenpairs of ``M2`` in the basis, plus ``E2`` in the basis and ``Bᵀ M1``."""
    B = sums.basis
    p = B.shape[1]
    n2 = sums.n2.clamp(min=1)
    m = B.T @ sums.m1_mean()
    e2 = (sums.s2 - B.T @ (sums.g2[:, None] * B)) / n2
    e2 = (e2 + e2.T) / 2
    m2 = e2 - (alpha0 / (alpha0 + 1)) * torch.outer(m, m)
    evals, evecs = torch.linalg.eigh(m2)
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    tol = max(float(evals[0]) if len(evals) else 0.0, 0.0) * p * torch.finfo(B.dtype).eps * 10
    rank = int((evals > tol).sum()) if len(evals) else 0
    if rank < k:
        raise ValueError(
            f"n_components={k} is larger than the whitening rank: the second moment M2 has only {rank} positive "
            f"eigenvalues in a basis of {p} directions. Lower n_components, or check the corpus (too few distinct "
            "words or documents, or alpha0 too large)."
        )
    return evecs, evals, e2, m


def whiten(sums: MomentSums, k: int, alpha0: float) -> Whitening:
    """Whitening and the whitened third moment ``T = M3(W, W, W)`` (k × k × k) from a third-moment pass.

    Raises:
        ValueError: when ``M2`` restricted to the basis has fewer than ``k`` positive eigenvalues (``k`` larger
            than the whitening rank), or when too few documents have three words.
    """
    if not sums.third:
        raise ValueError("whiten needs a pass with third=True")
    B = sums.basis
    p = B.shape[1]
    n3 = sums.n3.clamp(min=1)
    evecs, evals, e2, m = _second_moment_eigs(sums, k, alpha0)
    Wb = evecs / evals.sqrt()
    # E3 in the basis: a1 − (three placements of the pair correction) + 2·(the triple diagonal)
    BB = (B[:, :, None] * B[:, None, :]).reshape(B.shape[0], p * p)
    t0 = (BB.T @ sums.z3).reshape(p, p, p)
    diag3 = (BB.T @ (sums.g3[:, None] * B)).reshape(p, p, p)
    e3 = (sums.a1 - t0 - t0.permute(0, 2, 1) - t0.permute(2, 0, 1) + 2 * diag3) / n3
    a3 = alpha0 / (alpha0 + 2)
    b3 = 2 * alpha0**2 / ((alpha0 + 1) * (alpha0 + 2))
    pair = torch.einsum("ab,c->abc", e2, m)
    m3 = e3 - a3 * (pair + pair.permute(0, 2, 1) + pair.permute(2, 0, 1)) + b3 * torch.einsum("a,b,c->abc", m, m, m)
    T = torch.einsum("abc,ai,bj,ck->ijk", m3, Wb, Wb, Wb)
    return Whitening(basis=B, eigvecs=evecs, eigvals=evals, tensor=T)
