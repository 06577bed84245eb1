"""Every YAML under conf/ composes against its dataclass schema; bad keys and types fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from pipeline.config import TrainAppConfig, register_configs, to_object

CONF = Path(__file__).resolve().parents[3] / "conf"
PRIMARIES = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem != "hydra_settings")
GROUP_FILES = sorted(p for p in CONF.glob("*/*.yaml") if p.parent.name not in {"hydra"})

register_configs()


def _compose(primary: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=primary, overrides=overrides)


def _primary_for(group: str) -> str:
    """The first primary config whose defaults list uses ``group``."""
    for primary in PRIMARIES:
        text = (CONF / f"{primary}.yaml").read_text()
        if f"- {group}:" in text or f"- optional {group}:" in text:
            return primary
    pytest.fail(f"no primary config in conf/ uses the group {group}")


@pytest.mark.parametrize("primary", PRIMARIES)
def test_every_primary_composes(primary):
    cfg = _compose(primary, [])
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_group_option_composes(path):
    group = path.parent.name
    cfg = _compose(_primary_for(group), [f"{group}={path.stem}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if not path.read_text().startswith("# @package _global_"):  # experiment/, runtime/: keys at the top
        assert group in resolved


def test_train_config_becomes_typed_dataclasses():
    cfg = to_object(_compose("train", ["model=baseline", "experiment=quick"]), TrainAppConfig)
    assert isinstance(cfg, TrainAppConfig)
    assert cfg.model.name == "baseline" and cfg.model.context.value == "fixed"
    assert cfg.experiment == "quick" and cfg.model.emb_dim == 128
    assert cfg.run_dir == "runs/baseline"


def test_baseline_differs_from_bahdanau_only_in_name_and_context():
    a = OmegaConf.to_container(_compose("train", ["model=bahdanau"]).model)
    b = OmegaConf.to_container(_compose("train", ["model=baseline"]).model)
    diff = {k for k in a if a[k] != b[k]}
    assert diff == {"name", "context"}


def test_unknown_key_fails_naming_it():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as err:
        _compose("train", ["train.lr_typo=0.1"])
    assert "lr_typo" in str(err.value) + str(err.value.__cause__)


def test_wrong_type_fails_naming_the_key():
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        _compose("train", ["train.max_steps=many"])
    assert "max_steps" in str(err.value) + str(err.value.__cause__)


def test_bad_enum_value_fails_naming_the_key():
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        _compose("train", ["model.encoder.rnn=transformer"])
    assert "rnn" in str(err.value) + str(err.value.__cause__)


def test_slurm_launcher_composes_for_a_sweep_over_both_arms():
    """Submitting needs a SLURM cluster; here: the launcher config composes and targets submitit's SLURM launcher."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='pip install -e ".[slurm]"')
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "model=baseline", "hydra.launcher.gpus_per_node=4"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.gpus_per_node == 4 and launcher.timeout_min == 240 and launcher.max_num_timeout == 3
