"""The ALPF campaign: rounds of (train, score the pool, ask binary questions) under a question budget.

:class:`PartialFeedback` is a Lightning callback that drives the rounds inside one ``trainer.fit``: every
``epochs_per_round`` epochs it scores the open examples with the model being trained (eval mode, no
gradient, the pool loader without augmentation), asks ``round_budget`` questions chosen by the strategy,
and the next epoch trains on the grown set of partial labels (hence ``reload_dataloaders_every_n_epochs=1``).
Lightning 2 removed loop customisation, so a callback plus a dataloader reload is the smallest way to run
the whole campaign from one recipe (``trinity fit --config recipes/alpf.yaml``) around any LightningModule
that trains on ``(x, candidates)`` batches (:class:`PartialLabelClassifier` or a ``training_step`` calling
:func:`partial_label_loss`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from trinity_lightning.active.partial_feedback.datamodule import PartialFeedbackDataModule
from trinity_lightning.active.partial_feedback.oracle import (
    ActiveFileBinaryOracle,
    AnswersPending,
    BinaryOracle,
    FileBinaryOracle,
    SimulatedBinaryOracle,
)
from trinity_lightning.active.partial_feedback.questions import (
    QuestionContext,
    QuestionStrategy,
    binary_search_costs,
    get_question_strategy,
)
from trinity_lightning.active.partial_feedback.state import PartialLabels
from trinity_lightning.data import atomic_write_text

AnswerFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def ask_questions(
    strategy: QuestionStrategy,
    state: PartialLabels,
    question_masks: torch.Tensor,
    oracle: BinaryOracle,
    budget: int,
    probs: torch.Tensor | None = None,
    seed: int = 0,
    apply: AnswerFn | None = None,
) -> int:
    """Spend up to ``budget`` questions: select a batch, ask the oracle, apply the answers, repeat.

    The model posterior ``probs`` stays fixed within the call (one round); the candidate sets change
    after every batch, so strategies that finish examples (``uniform``, ``al_me``, ``aq_erc``) keep
    asking about the same examples until they are fully labelled.

    Args:
        strategy: a :class:`QuestionStrategy` (see :func:`get_question_strategy`).
        state: the partial labels (read; updated through ``apply``).
        question_masks: ``(Q, C)`` question masks.
        oracle: answers ``(examples, questions)``.
        budget: questions to spend.
        probs: ``(N, C)`` model probabilities (``None`` for model-free strategies).
        seed: seed of the strategy's random choices.
        apply: ``(examples, questions, answers) -> None``; default ``state.answer`` with the masks.

    Returns:
        The number of questions asked (less than ``budget`` when nothing is left to ask).

    Example:
        >>> masks = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)
        >>> state = PartialLabels(4, 3)
        >>> oracle = SimulatedBinaryOracle(torch.tensor([0, 1, 2, 0]), masks)
        >>> ask_questions(get_question_strategy("uniform"), state, masks, oracle, budget=100)
        7
        >>> state.labels().tolist()
        [0, 1, 2, 0]
    """
    if apply is None:

        def apply(ex: torch.Tensor, qs: torch.Tensor, ans: torch.Tensor) -> None:
            state.answer(ex, question_masks[qs], ans, qs)

    spent = 0
    while spent < budget:
        ctx = QuestionContext(state.candidates, question_masks, probs, state.asked, seed)
        examples, questions = strategy.select(ctx, budget - spent)
        if examples.numel() == 0:
            break
        answers = oracle.ask(examples, questions)
        apply(examples, questions, torch.as_tensor(answers, dtype=torch.bool))
        spent += int(examples.numel())
    return spent


class PartialFeedback(Callback):
    """Run an ALPF campaign inside ``trainer.fit`` (needs ``reload_dataloaders_every_n_epochs=1``).

    Budgets are a number of questions (``int``) or, as a ``float`` in ``(0, 1]``, a fraction of the
    *naive* cost: the questions a binary-search annotator needs to label the whole pool (computed from
    the dataset's labels with the simulated oracle, from the class-average cost with a human).

    Args:
        strategy: a registered question strategy (``uniform``, ``al_me``, ``aq_erc``, ``alpf_erc``, ``eig``,
            ``edc``) or an instance.
        round_budget: questions per round.
        total_budget: questions in all; the campaign stops asking then (training goes on to ``max_epochs``).
        epochs_per_round: training epochs between two rounds.
        questions_file: ask a human: a ``.jsonl`` path uses
            :class:`~trinity_lightning.active.partial_feedback.FileBinaryOracle` (answer in the file or with
            ``python -m trinity_lightning.active.partial_feedback.oracle FILE``); a folder uses the active-learning
            oracle's files (:class:`~trinity_lightning.active.partial_feedback.ActiveFileBinaryOracle`, answer with
            ``trinity label``). Default: the simulated oracle answering from the dataset's labels.
        curve_path: CSV written atomically after every round (round, questions, fraction of the naive
            budget, fully labelled, informative examples, the monitored metric).
        monitor: metric recorded in the curve (e.g. ``val_acc``).
        seed: seed of the strategy's random choices (round ``r`` uses ``seed + r``).

    Example:
        >>> cb = PartialFeedback("alpf_erc", round_budget=0.05, total_budget=0.3)
        >>> cb.state_key
        "PartialFeedback{'strategy': 'alpf_erc'}"
    """

    def __init__(
        self,
        strategy: str | QuestionStrategy = "alpf_erc",
        round_budget: float = 0.05,
        total_budget: float = 0.3,
        epochs_per_round: int = 1,
        questions_file: str | None = None,
        curve_path: str | None = None,
        monitor: str = "val_acc",
        seed: int = 0,
    ) -> None:
        for name, value in (("round_budget", round_budget), ("total_budget", total_budget)):
            if value <= 0 or (isinstance(value, float) and value > 1.0 and not float(value).is_integer()):
                raise ValueError(f"{name}: expected a positive question count or a fraction in (0, 1], got {value}")
        if epochs_per_round < 1:
            raise ValueError(f"epochs_per_round: expected a positive integer, got {epochs_per_round}")
        self.strategy = get_question_strategy(strategy)
        self.strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        self.round_budget, self.total_budget = round_budget, total_budget
        self.epochs_per_round = epochs_per_round
        self.questions_file = questions_file
        self.curve_path = Path(curve_path) if curve_path else None
        self.monitor, self.seed = monitor, seed
        self.round = 0
        self.spent = 0
        self.curve: list[dict[str, Any]] = []
        self.naive_cost = 0
        self.oracle: BinaryOracle | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(strategy=self.strategy_name)

    # ------------------------------------------------------------------ helpers
    def _datamodule(self, trainer: pl.Trainer) -> PartialFeedbackDataModule:
        dm = getattr(trainer, "datamodule", None)
        if not isinstance(dm, PartialFeedbackDataModule):
            raise ValueError(
                "datamodule: PartialFeedback needs a PartialFeedbackDataModule passed to "
                f"trainer.fit(datamodule=...), got {type(dm).__name__}"
            )
        return dm

    def _questions(self, value: float) -> int:
        if isinstance(value, float) and value <= 1.0:
            return max(1, round(value * self.naive_cost))
        return int(value)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if getattr(trainer, "reload_dataloaders_every_n_epochs", 0) != 1:
            raise ValueError(
                "trainer.reload_dataloaders_every_n_epochs: PartialFeedback grows the training set "
                "every round; set it to 1"
            )
        dm = self._datamodule(trainer)
        dm.setup("fit")
        costs = binary_search_costs(dm.question_masks)
        if self.questions_file is None:
            gold = dm.gold_labels()
            self.naive_cost = int(costs[gold].sum())
            self.oracle = SimulatedBinaryOracle(gold, dm.question_masks)
        else:
            n = dm.partial.num_examples if dm.partial is not None else 0
            self.naive_cost = round(float(costs.float().mean()) * n)
            if self.questions_file.endswith(".jsonl"):
                self.oracle = FileBinaryOracle(self.questions_file, dm.question_names)
            else:  # a folder: the active-learning oracle's files, answered with `trinity label`
                self.oracle = ActiveFileBinaryOracle(self.questions_file, dm.question_names)

    @torch.inference_mode()
    def _probabilities(
        self, dm: PartialFeedbackDataModule, pl_module: pl.LightningModule, indices: list[int]
    ) -> torch.Tensor:
        assert dm.partial is not None
        probs = torch.zeros(dm.partial.num_examples, dm.partial.num_classes)
        if not indices:
            return probs
        was_training = pl_module.training
        pl_module.eval()
        chunks = []
        for batch in dm.pool_dataloader(indices):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            chunks.append(pl_module(x.to(pl_module.device)).float().softmax(dim=-1).cpu())
        pl_module.train(was_training)
        probs[torch.as_tensor(indices)] = torch.cat(chunks)
        return probs

    def _round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = self._datamodule(trainer)
        assert dm.partial is not None and self.oracle is not None
        budget = min(self._questions(self.round_budget), self._questions(self.total_budget) - self.spent)
        if budget <= 0:
            return
        open_ = torch.nonzero(~dm.partial.fully_labelled).flatten().tolist()
        if not open_:
            return
        if hasattr(self.oracle, "answered"):  # human answers given while the run was stopped
            budget -= self._harvest(dm, self.oracle)
            open_ = torch.nonzero(~dm.partial.fully_labelled).flatten().tolist()
            if budget <= 0 or not open_:
                return
        probs = self._probabilities(dm, pl_module, open_)
        try:
            asked = ask_questions(
                self.strategy,
                dm.partial,
                dm.question_masks,
                self.oracle,
                budget,
                probs,
                self.seed + self.round,
                apply=dm.answer,
            )
        except AnswersPending as pending:
            if not bool(dm.partial.informative.any()):
                raise  # nothing to train on until the first answers come in
            trainer.should_stop = True
            print(f"PartialFeedback: {pending}")
            return
        self.spent += asked
        self.round += 1
        metric = trainer.callback_metrics.get(self.monitor)
        self.curve.append(
            {
                "round": self.round,
                "questions": self.spent,
                "budget_fraction": self.spent / max(1, self.naive_cost),
                "fully_labelled": int(dm.partial.fully_labelled.sum()),
                "informative": int(dm.partial.informative.sum()),
                self.monitor: float(metric) if metric is not None else float("nan"),
            }
        )
        for logger in trainer.loggers:
            logger.log_metrics(
                {
                    "alpf_questions": float(self.spent),
                    "alpf_round": float(self.round),
                    "alpf_fully_labelled": float(self.curve[-1]["fully_labelled"]),
                },
                step=trainer.global_step,
            )
        self._write_curve()

    def _harvest(self, dm: PartialFeedbackDataModule, oracle: Any) -> int:
        """Apply the human's answers that still tell something (idempotent: applied answers no longer split)."""
        assert dm.partial is not None
        examples, questions, answers = oracle.answered()
        if examples.numel() == 0:
            return 0
        masks = dm.question_masks[questions]
        n_yes = (dm.partial.candidates[examples] & masks).sum(dim=1)
        useful = (n_yes > 0) & (n_yes < dm.partial.num_candidates[examples])
        if bool(useful.any()):
            dm.answer(examples[useful], questions[useful], answers[useful])
        count = int(useful.sum())
        self.spent += count
        return count

    def _write_curve(self) -> None:
        if self.curve_path is None or not self.curve:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.curve[0]))
        writer.writeheader()
        writer.writerows(self.curve)
        atomic_write_text(self.curve_path, buffer.getvalue())

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = self._datamodule(trainer)
        assert dm.partial is not None
        self.spent = max(self.spent, dm.partial.num_questions)  # answers saved after the last checkpoint count
        if not bool(dm.partial.informative.any()) or hasattr(self.oracle, "answered"):
            self._round(trainer, pl_module)  # a first round (or the answers a human gave while stopped)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.epochs_per_round == 0 and not last_epoch:  # no training would follow
            self._round(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.round, "spent": self.spent, "curve": [dict(row) for row in self.curve]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round = int(state_dict["round"])
        self.spent = int(state_dict["spent"])
        self.curve = [dict(row) for row in state_dict["curve"]]
