"""The one name -> class registry: Lightning-style errors, overrides, kwargs checked, no Lightning import."""

import subprocess
import sys

import pytest

from trinity_lightning.rounds.registry import Registry


class Base:
    pass


def test_register_build_and_errors():
    things = Registry("thing", Base, "kind")

    @things.register("a", description="the a")
    class A(Base):
        def __init__(self, size: int = 1) -> None:
            self.size = size

    assert things.build("a", size=3).size == 3 and things.descriptions["a"] == "the a"
    instance = A()
    assert things.build(instance) is instance
    with pytest.raises(ValueError, match=r"kind: 'b' is not a registered thing. Available names: \['a'\]"):
        things.build("b")
    with pytest.raises(ValueError, match=r"does not take \['colour'\]"):
        things.build("a", colour="red")
    with pytest.raises(ValueError, match=r"already registered to A\. HINT: pass override=True"):
        things.register("a", type("Other", (Base,), {}))
    with pytest.raises(TypeError, match="not a Base subclass"):
        things.register("c", int)
    with pytest.raises(ValueError, match="already built"):
        things.build(instance, size=2)
    things.register("a", A, override=True)


def test_question_strategies_use_it():
    from trinity_lightning.active.partial_feedback import QUESTION_STRATEGIES, get_question_strategy

    assert isinstance(QUESTION_STRATEGIES, Registry)
    assert get_question_strategy("alpf_erc", chunk_size=16).chunk_size == 16
    with pytest.raises(ValueError, match=r"strategy: 'nope' is not a registered question strategy. Available names"):
        get_question_strategy("nope")
    with pytest.raises(ValueError, match="does not take"):
        get_question_strategy("alpf_erc", rule="eig")  # used to be silently ignored


def test_registry_imports_without_lightning():
    code = "import sys, trinity_lightning.rounds.registry; print('lightning' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
