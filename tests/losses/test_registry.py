"""Argument checks of :mod:`pyg_cf.losses.registry` (``get_loss`` and the schedules')."""

import re

import numpy as np
import pytest
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.losses import CFLoss, get_loss, register_loss
from pyg_cf.losses.registry import check_argument_types
from pyg_cf.losses.temperature import get_temperature_schedule


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("ssm", {"tau": "abc"}, "tau='abc' must be a number"),
        ("ssm", {"tau": True}, "tau=True must be a number"),
        # silently truncated to 2 negatives before the check
        ("ssm", {"num_negatives": 2.5}, "num_negatives=2.5 must be an integer"),
        ("ssm", {"num_negatives": "4"}, "num_negatives='4' must be an integer"),
        # silently taken as true before the check
        ("bpr", {"reject_positives": "yes"}, "reject_positives='yes' must be bool"),
        ("bce", {"logit_bias": True}, "logit_bias=True must be a number"),
        ("mml", {"margins": 0.5}, "margins=0.5 must be Sequence[float]"),
        ("mml", {"margins": ["a"]}, "margins=['a'] must be Sequence[float]"),
        ("ccl", {"shared_negatives": 1.5}, "shared_negatives=1.5 must be bool | int"),
    ],
)
def test_get_loss_refuses_a_value_of_the_wrong_kind_by_name(name, kwargs, message):
    with pytest.raises(ConfigError, match=f"^loss '{name}': argument {re.escape(message)}$"):
        get_loss(name, **kwargs)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("ssm", {"tau": 1}),  # an int where a float is annotated
        ("ssm", {"tau": np.float32(0.2)}),
        ("ssm", {"tau": torch.tensor(0.2)}),
        ("ssm", {"negatives": "sampled", "num_negatives": np.int64(4)}),
        ("mml", {"margins": (0.1, 0.2), "weights": [1, 2]}),
        ("mml", {"margins": np.array([0.1, 0.2]), "weights": [1.0, 1.0]}),
        ("ccl", {"shared_negatives": 16}),
        ("ccl", {"shared_negatives": True}),
        ("bsl", {"tau": None}),
    ],
)
def test_get_loss_takes_the_values_it_took_before(name, kwargs):
    assert isinstance(get_loss(name, **kwargs), CFLoss)


def test_num_negatives_is_no_longer_truncated():
    assert get_loss("ssm", negatives="sampled", num_negatives=3).num_negatives == 3
    with pytest.raises(ConfigError):
        get_loss("ssm", negatives="sampled", num_negatives=3.0)


def test_a_user_loss_is_checked_from_its_annotations():
    @register_loss("test-typed", overwrite=True)
    class Typed(CFLoss):
        negatives = "none"

        def __init__(self, scale: float = 1.0, steps: int | None = None, **extra: object):
            super().__init__()
            self.scale, self.steps = scale, steps

        def forward(self, batch):
            return batch.user_emb.sum() * self.scale

    assert get_loss("test-typed", scale=2, steps=None).scale == 2
    with pytest.raises(ConfigError, match=re.escape("steps=1.5 must be int | None")):
        get_loss("test-typed", steps=1.5)
    # not annotated by name: its type is not checked ...
    check_argument_types(Typed, {"anything": "goes to **extra"}, "loss 'test-typed'")
    # ... but **extra reaches CFLoss and nn.Module, which take no argument: the walk over
    # the bases stops there, so the name is refused as unknown (a **kwargs that does pass
    # it up would otherwise fail inside nn.Module.__init__ with a bare TypeError)
    with pytest.raises(ConfigError, match=r"bad arguments for loss 'test-typed': .*'anything'"):
        get_loss("test-typed", anything="goes to **extra")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: get_loss("ssm", bogus=1), "bad arguments for loss 'ssm': it takes no argument "),
        # AdapTau passes its other arguments up to AdapTau0: both name what they take
        (
            lambda: get_temperature_schedule("adap-tau", bogus=1),
            "bad arguments for temperature schedule 'adap-tau': it takes no argument ",
        ),
    ],
)
def test_an_unknown_argument_is_named_with_those_taken(make, message):
    with pytest.raises(ConfigError, match=re.escape(message + "'bogus'; it takes [")) as e:
        make()
    taken = str(e.value).split("it takes [")[1]
    assert "'tau'" in taken or "'divisor'" in taken
    if "adap-tau" in message:  # its own and its base's
        assert "'divisor'" in taken and "'warmup_epochs'" in taken


def test_a_missing_argument_is_a_config_error_and_a_constructors_own_error_is_not():
    @register_loss("test-required", overwrite=True)
    class Required(CFLoss):
        negatives = "none"

        def __init__(self, scale: float, broken: bool = False):
            super().__init__()
            if broken:  # a bug inside the constructor, not a bad argument
                raise TypeError("unsupported operand type(s) inside __init__")
            self.scale = scale

        def forward(self, batch):
            return batch.user_emb.sum() * self.scale

    with pytest.raises(ConfigError, match=r"bad arguments for loss 'test-required': .*'scale'"):
        get_loss("test-required")
    assert get_loss("test-required", scale=2.0).scale == 2.0
    with pytest.raises(TypeError, match="inside __init__") as e:
        get_loss("test-required", scale=1.0, broken=True)
    assert not isinstance(e.value, ConfigError)
    assert e.traceback[-1].name == "__init__"  # the traceback reaches the constructor


def test_unresolvable_annotations_are_left_to_the_constructor():
    def factory(x: "NotAType" = 1):  # noqa: F821
        return x

    check_argument_types(factory, {"x": "whatever"}, "factory")  # no error


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("adap-tau0", {"warmup_epochs": 1.5}, "warmup_epochs=1.5 must be an integer"),
        ("adap-tau0", {"quantile": "x"}, "quantile='x' must be a number"),
        ("adap-tau", {"base": 0.9, "divisor": "x"}, "divisor='x' must be a number"),
        ("adap-tau", {"base": [0.9]}, "base=[0.9] must be str | float"),
        # AdapTau passes these to AdapTau0 through **kwargs: they were not checked (1.5
        # truncated to 1; 'no' taken as true)
        ("adap-tau", {"warmup_epochs": 1.5}, "warmup_epochs=1.5 must be an integer"),
        ("adap-tau", {"use_variance": "no"}, "use_variance='no' must be bool"),
    ],
)
def test_temperature_schedules_are_checked_too(name, kwargs, message):
    expected = f"^temperature schedule '{name}': argument {re.escape(message)}$"
    with pytest.raises(ConfigError, match=expected):
        get_temperature_schedule(name, **kwargs)
    get_temperature_schedule("adap-tau", base="mean", divisor=0.6, warmup_epochs=3)


@pytest.mark.parametrize("name", sorted(__import__("pyg_cf.losses").losses.list_losses()))
def test_every_registered_loss_prints_its_settings(name):
    """``print(loss)`` in a notebook shows the settings that define it."""
    loss = get_loss(name)
    text = repr(loss)
    assert text.startswith(type(loss).__name__ + "(")
    for attr in ("tau", "margin", "margins", "num_negatives"):
        # the settings its constructor sets (a class-level num_negatives = 0 means "draws none")
        value = vars(loss).get(attr)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # as "name=value" (BSL names its first temperature tau1)
            shown = "|".join(re.escape(v) for v in {f"{value:g}", str(value)})
            assert re.search(rf"\b{attr}1?=({shown})(?=[,)\s]|$)", text), (attr, text)


@pytest.mark.parametrize(
    "name,kwargs,shown",
    [
        ("bpr", {"reject_positives": True}, "reject_positives=True"),
        ("ccl", {"shared_negatives": 16}, "shared_negatives=16"),
        ("mse", {"sampler": "popularity", "pop_beta": 0.5}, "sampler='popularity', pop_beta=0.5"),
        ("ssm", {"negatives": "sampled", "num_negatives": 8, "shared_negatives": True}, "=True"),
        ("bsl", {"negatives": "sampled", "num_negatives": 8, "reject_positives": True}, "=True"),
    ],
)
def test_a_loss_prints_its_sampled_negative_settings_that_differ_from_the_defaults(
    name, kwargs, shown
):
    assert shown in repr(get_loss(name, **kwargs))
    assert "reject_positives" not in repr(get_loss(name))


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("mml", {"margins": [0.5, 0.9], "weights": [1.0, -0.5]}, r"weights must be >= 0"),
        ("bce", {"logit_bias": float("inf")}, "logit_bias must be a finite number, got inf"),
    ],
)
def test_get_loss_refuses_a_value_out_of_range_by_name(name, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        get_loss(name, **kwargs)


def test_register_loss_refuses_a_class_that_is_not_a_loss():
    with pytest.raises(ConfigError, match=r"register_loss\('not-a-loss'\) expects a CFLoss"):
        register_loss("not-a-loss")(dict)


@pytest.mark.parametrize("name", [None, 3, b"ssm"])
def test_a_loss_name_that_is_not_a_string_is_refused_by_name(name):
    # an AttributeError ('NoneType' object has no attribute 'lower') before
    message = rf"get_loss: the loss name must be a string, got {name!r}"
    with pytest.raises(ConfigError, match=message):
        get_loss(name)
    with pytest.raises(ConfigError, match="register_loss: the loss name must be a string"):
        register_loss(name)


def test_a_user_loss_passing_kwargs_up_or_without_init_refuses_an_unknown_argument():
    """The walk over the bases reached ``nn.Module.__init__(*args, **kwargs)``, took it for
    a constructor accepting anything, and skipped the check: the user got torch's bare
    ``TypeError`` instead of the documented ``ConfigError``."""

    @register_loss("test-no-init", overwrite=True)
    class NoInit(CFLoss):
        negatives = "none"

        def forward(self, batch):
            return batch.user_emb.sum()

    @register_loss("test-passes-up", overwrite=True)
    class PassesUp(CFLoss):
        negatives = "none"

        def __init__(self, **kwargs: object):
            super().__init__(**kwargs)

        def forward(self, batch):
            return batch.user_emb.sum()

    @register_loss("test-passes-up-twice", overwrite=True)
    class Sub(PassesUp):
        def __init__(self, scale: float = 1.0, **kwargs: object):
            super().__init__(**kwargs)
            self.scale = scale

    for name in ("test-no-init", "test-passes-up"):
        message = rf"^bad arguments for loss '{name}': .*'foo'; it takes \[\]$"
        with pytest.raises(ConfigError, match=message):
            get_loss(name, foo=1)
        assert isinstance(get_loss(name), CFLoss)
    with pytest.raises(ConfigError, match=r"'foo'; it takes \['scale'\]$"):
        get_loss("test-passes-up-twice", foo=1)
    assert get_loss("test-passes-up-twice", scale=2.0).scale == 2.0
