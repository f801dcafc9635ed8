"""The ALPF campaign: rounds of (train, score the pool, ask binary questions) under a question budget.

:class:`PartialFeedback` is a Lightning callback, a policy on the round engine
(:mod:`trinity_lightning.rounds`), that drives the rounds inside one ``trainer.fit``: every
``epochs_per_round`` epochs it scores the open examples with the model being trained
(:func:`~trinity_lightning.rounds.predict_pool`: eval mode, the precision plugin, each rank its shard under
DDP), asks ``round_budget`` yes/no questions chosen by the question strategy through the oracle protocol, and
the next epoch trains on the grown set of partial labels (the train loader is rebuilt every epoch). Lightning
2 removed loop customisation, so a callback plus a dataloader reload is the smallest way to run the whole
campaign from one recipe (``trinity fit --config recipes/alpf.yaml``) around any LightningModule that trains
on ``(x, candidates)`` batches (:class:`PartialLabelClassifier` or a ``training_step`` calling
:func:`partial_label_loss`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from trinity_lightning.active.partial_feedback.datamodule import PartialFeedbackDataModule
from trinity_lightning.active.partial_feedback.oracle import BinaryOracle, SimulatedBinaryOracle, question_text
from trinity_lightning.active.partial_feedback.questions import (
    QuestionContext,
    QuestionStrategy,
    binary_search_costs,
    get_question_strategy,
)
from trinity_lightning.active.partial_feedback.state import PartialLabels
from trinity_lightning.rounds.curve import log_round, round_metrics, write_curve
from trinity_lightning.rounds.engine import RoundCallback
from trinity_lightning.rounds.inference import barrier, broadcast, predict_pool
from trinity_lightning.rounds.oracle import Answers, FileOracle, Oracle, Query, default_render
from trinity_lightning.rounds.schedule import (
    StoppingCriterion,
    check_budget,
    ensure_reload_every_epoch,
    require_datamodule,
    resolve_budget,
    stop_reason,
)

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


class PartialFeedback(RoundCallback):
    """Run an ALPF campaign inside ``trainer.fit`` (see the module docstring).

    Budgets are a number of questions (``int``) or, as a ``float`` in ``(0, 1]``, a fraction of the
    *naive* cost: the questions a binary-search annotator needs to label the whole pool (computed from
    the dataset's labels with the simulated oracle, from the class-average cost with a human).

    Metrics: the curve and the loggers get ``alpf/questions``, ``alpf/round``, ``alpf/fully_labelled`` and
    ``alpf/informative``; the curve also copies the module's validation metrics: ``monitor`` when given (a
    name or a list; refused at the first round after a validation, with the logged names, when not logged),
    else every metric named ``val_*``, ``val/*``, ``valid_*`` or ``validation_*``.

    Args:
        strategy: a registered question strategy (``uniform``, ``al_me``, ``aq_erc``, ``alpf_erc``, ``eig``,
            ``edc``) or an instance.
        round_budget: questions per round.
        total_budget: questions in all; the campaign stops asking then (training goes on to ``max_epochs``).
        epochs_per_round: training epochs between two rounds.
        questions_file: ask a person: a folder where :class:`~trinity_lightning.rounds.FileOracle` writes
            ``round_NNNN.queries.jsonl`` (answer with ``trinity label``); the run stops while answers are
            pending and resumes with ``ckpt_path=last``. (A ``.jsonl`` path, the old single-file format, is
            deprecated and becomes the folder of that name without the suffix.) Default: the simulated
            oracle answering from the dataset's labels.
        curve_path: CSV written atomically after every round (round, questions, fraction of the naive
            budget, fully labelled, informative examples, the recorded metrics).
        monitor: the metric(s) recorded in the curve (default: every validation metric).
        seed: seed of the strategy's random choices (round ``r`` uses ``seed + r``).
        oracle: any :class:`~trinity_lightning.rounds.Oracle` answering yes/no queries (overrides
            ``questions_file``).
        stopping: extra stopping criteria, each ``should_stop(curve) -> bool``.

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
        monitor: str | list[str] | None = None,
        seed: int = 0,
        oracle: Oracle | None = None,
        stopping: Sequence[StoppingCriterion] | None = None,
    ) -> None:
        super().__init__()
        check_budget(round_budget, "round_budget", allow_none=False)
        check_budget(total_budget, "total_budget", allow_none=False)
        if not isinstance(epochs_per_round, int) or epochs_per_round < 1:
            raise ValueError(f"epochs_per_round: expected a positive integer, got {epochs_per_round}")
        self.strategy = get_question_strategy(strategy)
        self.strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        self.round_budget, self.total_budget = round_budget, total_budget
        self.epochs_per_round = epochs_per_round
        self.questions_file = questions_file
        self.curve_path = Path(curve_path) if curve_path else None
        self.monitor, self.seed = monitor, seed
        self.stopping = list(stopping or [])
        self._user_oracle = oracle
        # state (saved in checkpoints)
        self.round = 0
        self.spent = 0
        self.curve: list[dict[str, Any]] = []
        self.batch = 0  # oracle batches handed out (several per round: answers change the candidate sets)
        self.round_left = 0  # questions still to ask in the open round
        self.pending: list[tuple[int, int]] = []  # (example, question id) of the batch awaiting answers
        self.waiting = False
        self.finished = False
        self.naive_cost = 0
        self.oracle: Oracle | None = None
        self._restored = False  # state came from a checkpoint
        self._validated = True  # whether a validation ran before the open round (the monitor can be checked)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(strategy=self.strategy_name)

    @property
    def phase(self) -> str:
        """``"train"``, ``"waiting"`` (for answers) or ``"finished"``."""
        return "finished" if self.finished else "waiting" if self.waiting else "train"

    # ------------------------------------------------------------------ helpers
    def _datamodule(self, trainer: pl.Trainer) -> PartialFeedbackDataModule:
        dm: PartialFeedbackDataModule = require_datamodule(trainer, PartialFeedbackDataModule, "PartialFeedback")
        return dm

    def _questions(self, value: float) -> int:
        return int(resolve_budget(value, self.naive_cost) or 0)

    def _make_oracle(self, dm: PartialFeedbackDataModule) -> Oracle:
        if self._user_oracle is not None:
            return self._user_oracle
        if self.questions_file is None:
            return SimulatedBinaryOracle(dm.gold_labels(), dm.question_masks)
        folder = Path(self.questions_file)
        if folder.suffix == ".jsonl":
            warnings.warn(
                f"questions_file: a .jsonl file is the old single-file format; questions now go to the folder "
                f"{folder.with_suffix('')} (answer with `trinity label`)",
                DeprecationWarning,
                stacklevel=2,
            )
            folder = folder.with_suffix("")
        return FileOracle(str(folder), wait=False)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = self._datamodule(trainer)
        ensure_reload_every_epoch(trainer, "PartialFeedback")
        dm.setup("fit")
        costs = binary_search_costs(dm.question_masks)
        if self.questions_file is None and self._user_oracle is None:
            self.naive_cost = int(costs[dm.gold_labels()].sum())
        else:
            n = dm.partial.num_examples if dm.partial is not None else 0
            self.naive_cost = round(float(costs.float().mean()) * n)
        self.oracle = self._make_oracle(dm)

    def _probabilities(
        self, trainer: pl.Trainer, dm: PartialFeedbackDataModule, pl_module: pl.LightningModule, indices: list[int]
    ) -> torch.Tensor:
        assert dm.partial is not None
        probs = torch.zeros(dm.partial.num_examples, dm.partial.num_classes)
        if indices and getattr(self.strategy, "needs_model", True) and getattr(self.strategy, "uses_model", True):
            probs[torch.as_tensor(indices)] = predict_pool(pl_module, indices, dm.pool_dataloader, trainer=trainer)
        return probs

    # ------------------------------------------------------------------ rounds
    def _start_round(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, validated: bool, resume: bool = False
    ) -> None:
        dm = self._datamodule(trainer)
        assert dm.partial is not None
        if self.finished:
            return
        if resume:
            self._validated = validated
            self._ask_round(trainer, pl_module, dm)
            return
        budget = min(self._questions(self.round_budget), self._questions(self.total_budget) - self.spent)
        reason = stop_reason(self.stopping, self.curve)
        if budget <= 0 or not bool((~dm.partial.fully_labelled).any()) or reason is not None:
            self.finished = True
            rank_zero_info(
                f"partial feedback: no more questions ({reason or 'budget spent or every example labelled'})"
            )
            return
        self.round_left = budget
        self._validated = validated
        self._ask_round(trainer, pl_module, dm)

    def _ask_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: PartialFeedbackDataModule) -> None:
        """Ask batches until the round's budget is spent (answers change the candidate sets in between)."""
        assert dm.partial is not None and self.oracle is not None
        open_ = torch.nonzero(~dm.partial.fully_labelled).flatten().tolist()
        probs = self._probabilities(trainer, dm, pl_module, open_)
        while True:
            if not self.pending:
                if self.round_left <= 0:
                    break
                ctx = QuestionContext(
                    dm.partial.candidates, dm.question_masks, probs, dm.partial.asked, self.seed + self.round
                )
                examples, questions = self.strategy.select(ctx, self.round_left)
                if examples.numel() == 0:
                    break
                self.batch += 1
                self.pending = list(zip(examples.tolist(), questions.tolist()))
                sent = self.oracle.pending(self.batch)  # handed out before a restart: the person may be halfway
                if sent:
                    self.pending = [(q.index, int(q.question_id if q.question_id is not None else -1)) for q in sent]
            items = [self._question(dm, e, q) for e, q in self.pending]
            if trainer.is_global_zero:
                self.oracle.query(self.batch, items, dm)
            barrier(trainer, "alpf-query")
            if not trainer.is_global_zero:
                self.oracle.query(self.batch, items, dm)
            answers: Answers | None = broadcast(self.oracle.collect(self.batch), trainer)
            if answers is None:
                self.waiting = True
                trainer.should_stop = True
                where = getattr(self.oracle, "queries_path", None)
                rank_zero_info(
                    f"partial feedback: waiting for {len(self.pending)} answers"
                    + (f" (trinity label {where(self.batch)})" if where else "")
                    + "; resume with ckpt_path=last"
                )
                return
            self.waiting = False
            self._apply(dm, answers)
        self._finish_round(trainer, pl_module, dm)

    def _apply(self, dm: PartialFeedbackDataModule, answers: Answers) -> None:
        """Apply the batch's answers once: an answer that no longer splits a candidate set was applied already."""
        assert dm.partial is not None and answers.labels is not None
        examples = torch.tensor([e for e, _ in self.pending], dtype=torch.int64)
        questions = torch.tensor([q for _, q in self.pending], dtype=torch.int64)
        given = dict(zip(answers.indices, answers.labels))
        values = torch.tensor([bool(given[e]) for e, _ in self.pending], dtype=torch.bool)
        masks = dm.question_masks[questions]
        n_yes = (dm.partial.candidates[examples] & masks).sum(dim=1)
        useful = (n_yes > 0) & (n_yes < dm.partial.num_candidates[examples])
        if bool(useful.any()):
            dm.answer(examples[useful], questions[useful], values[useful])
        asked = len(self.pending)
        self.spent += asked
        self.round_left -= asked
        self.pending = []
        self.waiting = False

    def _finish_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: PartialFeedbackDataModule) -> None:
        assert dm.partial is not None
        self.round += 1
        self.round_left = 0
        metrics = round_metrics(trainer, self.monitor, "PartialFeedback", check=self._validated)
        row: dict[str, Any] = {
            "round": self.round,
            "questions": self.spent,
            "budget_fraction": self.spent / max(1, self.naive_cost),
            "fully_labelled": int(dm.partial.fully_labelled.sum()),
            "informative": int(dm.partial.informative.sum()),
            **metrics,
        }
        self.curve.append(row)
        log_round(
            trainer,
            pl_module,
            "alpf",
            {
                "questions": self.spent,
                "round": self.round,
                "fully_labelled": row["fully_labelled"],
                "informative": row["informative"],
            },
        )
        if self.curve_path is not None and trainer.is_global_zero:
            write_curve(self.curve_path, self.curve)

    # ------------------------------------------------------------------ hooks
    def _harvest(self, trainer: pl.Trainer, dm: PartialFeedbackDataModule) -> None:
        """A fresh fit over an existing questions folder: apply every answered batch (once), find the open one."""
        assert self.oracle is not None
        while True:
            items = self.oracle.pending(self.batch + 1)
            if not items:
                return
            self.batch += 1
            self.pending = [(q.index, int(q.question_id if q.question_id is not None else -1)) for q in items]
            answers: Answers | None = broadcast(self.oracle.collect(self.batch), trainer)
            if answers is None:
                return  # the open batch: asked again (same file) at the first round
            self._apply(dm, answers)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = self._datamodule(trainer)
        assert dm.partial is not None
        if not self._restored:
            self._harvest(trainer, dm)
        self.spent = max(self.spent, dm.partial.num_questions)  # a fresh fit continuing from partial_path
        if self.pending and not self._restored:
            self.round_left = max(self.round_left, len(self.pending))
            self._start_round(trainer, pl_module, validated=False, resume=True)
            return
        if not bool(dm.partial.informative.any()) and not self.waiting and not self.pending:
            self._start_round(trainer, pl_module, validated=False)  # a first round: nothing to train on yet

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restore_rng_states(trainer)
        if self.pending and not trainer.should_stop:  # resumed (or started) while a person had questions
            self._validated = False  # no validation ran yet in this process: the metrics are not known
            self._ask_round(trainer, pl_module, self._datamodule(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.waiting:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.epochs_per_round == 0 and not last_epoch:  # no training would follow
            self._start_round(trainer, pl_module, validated=True)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """A module that trains on hard labels fails on the candidate masks: name the one thing to change."""
        if trainer.training and isinstance(exception, (RuntimeError, ValueError, TypeError)):
            exception.add_note(
                "PartialFeedback: training batches are (x, candidates) with candidates a (B, C) boolean mask of the "
                "classes still possible, not class ids; train with partial_label_loss(logits, candidates) in "
                "training_step (or use PartialLabelClassifier)"
            )

    @staticmethod
    def _question(dm: PartialFeedbackDataModule, example: int, question: int) -> Query:
        """A yes/no query that shows the example, the asked node's path in the hierarchy and the classes left."""
        name = dm.question_names[question]
        path, node = [name], dm.hierarchy.parent.get(name)
        while node is not None and len(dm.hierarchy.leaves_under(node)) < dm.hierarchy.num_classes:  # not the root
            path.insert(0, node)
            node = dm.hierarchy.parent.get(node)
        left = [] if dm.partial is None else torch.nonzero(dm.partial.candidates[example]).flatten().tolist()
        shown = {**default_render(dm, example), "path": path, "candidates": [dm.hierarchy.classes[k] for k in left]}
        return Query(example, "yesno", example=shown, question=question_text(name), question_id=question)

    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "phase": self.phase,
            "spent": self.spent,
            "curve": [dict(row) for row in self.curve],
            "batch": self.batch,
            "round_left": self.round_left,
            "pending": [list(p) for p in self.pending],
            "waiting": self.waiting,
            "finished": self.finished,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round = int(state_dict["round"])
        self.spent = int(state_dict["spent"])
        self.curve = [dict(row) for row in state_dict["curve"]]
        self.batch = int(state_dict.get("batch", 0))
        self.round_left = int(state_dict.get("round_left", 0))
        self.pending = [(int(e), int(q)) for e, q in state_dict.get("pending", [])]
        self.waiting = bool(state_dict.get("waiting", False))
        self.finished = bool(state_dict.get("finished", False))
        self._restored = True
        self.load_rng(state_dict)
