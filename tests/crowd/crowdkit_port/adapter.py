"""A thin adapter that gives our aggregators crowd-kit 1.4.2's pandas interface, so that crowd-kit's own test
scenarios (restated in this folder) run against our classes.

``CrowdKitView(DawidSkene(...)).fit(frame, true_labels, initial_error)`` fits ours and exposes crowd-kit's
fitted attributes: ``labels_`` (Series ``agg_label`` indexed by ``task``), ``probas_`` (DataFrame, columns
named ``label``), ``priors_`` (Series ``prior``), ``errors_`` (DataFrame indexed by ``(worker, label)`` with only
the observed rows, as crowd-kit stores), ``skills_`` (Series ``skill`` indexed by ``worker``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch


class CrowdKitView:
    """crowd-kit's attribute shapes over one of our aggregators."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, data: pd.DataFrame, *args: Any, **kwargs: Any) -> CrowdKitView:
        self.model.fit(data[["task", "worker", "label"]], *args, **kwargs)
        self._convert()
        return self

    def fit_predict(self, data: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.Series:
        return self.fit(data, *args, **kwargs).labels_

    def fit_predict_proba(self, data: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return self.fit(data, *args, **kwargs).probas_

    def _convert(self) -> None:
        m = self.model
        if m.empty_:
            self.probas_ = pd.DataFrame()
            self.errors_ = pd.DataFrame()
            self.priors_ = pd.Series(dtype=float, name="prior")
            self.labels_ = pd.Series(dtype=float, name="agg_label")
            return
        t = m.table_
        tasks = pd.Index(t.item_ids, name="task")
        classes = pd.Index(t.classes, name="label")
        self.labels_ = pd.Series(t.decode_labels(m.labels_), index=tasks, name="agg_label")
        self.probas_ = pd.DataFrame(m.probas_.to(torch.float64).numpy(), index=tasks, columns=classes)
        if hasattr(m, "priors_"):
            self.priors_ = pd.Series(m.priors_.to(torch.float64).numpy(), index=classes, name="prior")
        if hasattr(m, "skills_"):
            self.skills_ = pd.Series(
                m.skills_.to(torch.float64).numpy(), index=pd.Index(t.worker_ids, name="worker"), name="skill"
            )
        if hasattr(m, "error_rows_") or (hasattr(m, "errors_") and hasattr(m, "skills_")):
            errors = m.errors_.to(torch.float64).numpy()  # (worker, observed, true)
            observed = np.zeros((t.num_workers, t.num_classes), dtype=bool)
            observed[t.workers.numpy(), t.labels.numpy()] = True
            w, lab = np.nonzero(observed)
            index = pd.MultiIndex.from_arrays(
                [t.worker_ids[w], np.asarray(t.classes, dtype=object)[lab]], names=["worker", "label"]
            )
            self.errors_ = pd.DataFrame(errors[w, lab], index=index, columns=classes)


def patch_crowdkit_check_is_fitted() -> None:
    """crowd-kit 1.4.2's Wawa / ZeroBasedSkill / GoldMajorityVote call scikit-learn's ``check_is_fitted``, which
    fails on their attrs classes with scikit-learn >= 1.6 (no ``__sklearn_tags__``): replace it with a plain
    attribute check so that the anchor runs."""
    import importlib

    def check(estimator: Any, attributes: Any = None, **_: Any) -> None:
        for name in [attributes] if isinstance(attributes, str) else attributes or []:
            if getattr(estimator, name, None) is None:
                raise RuntimeError(f"{type(estimator).__name__} is not fitted ({name})")

    for module in ("wawa", "zero_based_skill", "gold_majority_vote"):
        mod = importlib.import_module(f"crowdkit.aggregation.classification.{module}")
        if hasattr(mod, "check_is_fitted"):
            mod.check_is_fitted = check
