"""Active learning with partial feedback (ALPF): hierarchical yes/no questions and partial-label training.

See docs/alpf.md. Hu, Lipton, Anandkumar, Ramanan, "Active Learning with Partial Feedback", ICLR 2019.
"""

from trinity_lightning.active.partial_feedback.campaign import PartialFeedback, ask_questions
from trinity_lightning.active.partial_feedback.datamodule import (
    ImagePartialFeedbackDataModule,
    PartialFeedbackDataModule,
)
from trinity_lightning.active.partial_feedback.hierarchy import ClassHierarchy
from trinity_lightning.active.partial_feedback.loss import PartialLabelLoss, partial_label_loss
from trinity_lightning.active.partial_feedback.module import PartialLabelClassifier
from trinity_lightning.active.partial_feedback.oracle import (
    ActiveFileBinaryOracle,
    AnswersPending,
    BinaryOracle,
    FileBinaryOracle,
    SimulatedBinaryOracle,
    answer_in_terminal,
)
from trinity_lightning.active.partial_feedback.questions import (
    QUESTION_STRATEGIES,
    FullAnnotation,
    PairSelection,
    QuestionContext,
    QuestionStrategy,
    best_questions,
    binary_search_costs,
    get_question_strategy,
    register_question_strategy,
)
from trinity_lightning.active.partial_feedback.state import PartialLabels
from trinity_lightning.active.partial_feedback.wordnet import (
    CIFAR10_SYNSETS,
    FASHION_MNIST_GROUPS,
    cifar10_hierarchy,
    fashion_mnist_hierarchy,
    wordnet_hierarchy,
)

__all__ = [
    "CIFAR10_SYNSETS",
    "FASHION_MNIST_GROUPS",
    "QUESTION_STRATEGIES",
    "ActiveFileBinaryOracle",
    "AnswersPending",
    "BinaryOracle",
    "ClassHierarchy",
    "FileBinaryOracle",
    "FullAnnotation",
    "ImagePartialFeedbackDataModule",
    "PairSelection",
    "PartialFeedback",
    "PartialFeedbackDataModule",
    "PartialLabelClassifier",
    "PartialLabelLoss",
    "PartialLabels",
    "QuestionContext",
    "QuestionStrategy",
    "SimulatedBinaryOracle",
    "answer_in_terminal",
    "ask_questions",
    "best_questions",
    "binary_search_costs",
    "cifar10_hierarchy",
    "fashion_mnist_hierarchy",
    "get_question_strategy",
    "partial_label_loss",
    "register_question_strategy",
    "wordnet_hierarchy",
]
