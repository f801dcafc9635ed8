"""Spectral (tensor) LDA: method-of-moments topic models, their readers, metrics and Lightning glue.

Example:
    >>> from trinity_lightning.topics import SpectralLDA, synthetic_lda
    >>> data = synthetic_lda(n_docs=2000, n_words=60, n_topics=3, seed=0)
    >>> lda = SpectralLDA(3, alpha0=data.alpha.sum().item(), random_state=0).fit(data.counts)
    >>> lda.components_.shape
    (3, 60)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trinity_lightning._lazy import lazy_exports

_EXPORTS = {
    "SpectralLDA": "trinity_lightning.topics.spectral",
    "infer_doc_topics": "trinity_lightning.topics.spectral",
    "variational_em": "trinity_lightning.topics.spectral",
    "tensor_power_method": "trinity_lightning.topics.decompose",
    "cp_als": "trinity_lightning.topics.decompose",
    "project_simplex": "trinity_lightning.topics.decompose",
    "MomentSums": "trinity_lightning.topics.moments",
    "SparseBatch": "trinity_lightning.topics.moments",
    "whiten": "trinity_lightning.topics.moments",
    "whitening_only": "trinity_lightning.topics.moments",
    "online_tensor_decomposition": "trinity_lightning.topics.online",
    "whitened_contraction": "trinity_lightning.topics.online",
    "Corpus": "trinity_lightning.topics.readers",
    "as_counts": "trinity_lightning.topics.readers",
    "read_bow": "trinity_lightning.topics.readers",
    "read_hf_texts": "trinity_lightning.topics.readers",
    "read_ldac": "trinity_lightning.topics.readers",
    "texts_to_counts": "trinity_lightning.topics.readers",
    "tokenize": "trinity_lightning.topics.readers",
    "SyntheticLDA": "trinity_lightning.topics.metrics",
    "coherence_npmi": "trinity_lightning.topics.metrics",
    "coherence_umass": "trinity_lightning.topics.metrics",
    "perplexity": "trinity_lightning.topics.metrics",
    "recovery_l1": "trinity_lightning.topics.metrics",
    "sample_lda_counts": "trinity_lightning.topics.metrics",
    "synthetic_lda": "trinity_lightning.topics.metrics",
    "top_words": "trinity_lightning.topics.metrics",
    "TopicModel": "trinity_lightning.topics.module",
    "TopicModelDataModule": "trinity_lightning.topics.module",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from trinity_lightning.topics.decompose import cp_als, project_simplex, tensor_power_method
    from trinity_lightning.topics.metrics import (
        SyntheticLDA,
        coherence_npmi,
        coherence_umass,
        perplexity,
        recovery_l1,
        sample_lda_counts,
        synthetic_lda,
        top_words,
    )
    from trinity_lightning.topics.module import TopicModel, TopicModelDataModule
    from trinity_lightning.topics.moments import MomentSums, SparseBatch, whiten, whitening_only
    from trinity_lightning.topics.online import online_tensor_decomposition, whitened_contraction
    from trinity_lightning.topics.readers import (
        Corpus,
        as_counts,
        read_bow,
        read_hf_texts,
        read_ldac,
        texts_to_counts,
        tokenize,
    )
    from trinity_lightning.topics.spectral import SpectralLDA, infer_doc_topics, variational_em
