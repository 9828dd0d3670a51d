import dataclasses

import pytest

from musicrep.config import FeatureConfig, config_hash, load_config, save_config
from musicrep.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    margin: float = dataclasses.field(default=0.4, metadata={"min": 0.0, "max": 2.0})


@dataclasses.dataclass(frozen=True)
class Outer:
    lr: float = dataclasses.field(default=0.1, metadata={"min": 0.0, "min_exclusive": True})
    epochs: int = 3
    optimizer: str = dataclasses.field(default="sgd", metadata={"choices": ("sgd", "adam")})
    amp: bool = False
    sizes: tuple[int, ...] = (1, 2)
    note: str | None = None
    inner: Inner = Inner()


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\ninner:\n  margin: 0.25\n")
    cfg = load_config(Outer, path=path, overrides=["epochs=7", "optimizer=adam", "amp=true", "sizes=[4, 8]", "inner.margin=0.1"])
    assert cfg == Outer(lr=0.01, epochs=7, optimizer="adam", amp=True, sizes=(4, 8), inner=Inner(0.1))
    assert load_config(Outer) == Outer()


@pytest.mark.parametrize(
    "override,message",
    [
        ("epoch=3", "unknown setting epoch"),
        ("inner.margn=1", "unknown setting inner.margn"),
        ("epochs=three", "epochs must be an integer"),
        ("epochs=1.5", "epochs must be an integer"),
        ("lr=0", "lr=0.0 is out of range"),
        ("inner.margin=5", "inner.margin=5.0 is out of range"),
        ("optimizer=rmsprop", "optimizer='rmsprop' is not one of"),
        ("amp=maybe", "amp must be true or false"),
        ("lr", "must look like key=value"),
    ],
)
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(Outer, path=None, overrides=[override])


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, path=tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Outer, path=bad)


def test_save_round_trip_and_hash(tmp_path):
    cfg = Outer(epochs=9, sizes=(3,))
    save_config(cfg, path=tmp_path / "c.yaml")
    assert load_config(Outer, path=tmp_path / "c.yaml") == cfg
    assert FeatureConfig().hash() == config_hash(FeatureConfig())
    assert FeatureConfig().hash() != FeatureConfig(n_mels=96).hash()
