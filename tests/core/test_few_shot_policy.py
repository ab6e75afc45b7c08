"""The few-shot short-label policy (``error | largest | all``) has one vocabulary
(:data:`mvlpt.core.sampling.IF_TOO_FEW`), and every place that takes it rejects another value with
a :class:`ConfigError` naming its own key."""

from __future__ import annotations

import pytest

from mvlpt.core.errors import ConfigError
from mvlpt.core.sampling import IF_TOO_FEW, check_if_too_few


def test_check_accepts_the_vocabulary_and_names_the_key():
    for value in IF_TOO_FEW:
        check_if_too_few(value, "k")
    with pytest.raises(ConfigError, match=r"my\.key must be one of \['error', 'largest', 'all'\], found 'most'"):
        check_if_too_few("most", "my.key")
    with pytest.raises(ConfigError, match="found 'all'"):
        check_if_too_few("all", "k", allowed=("error", "largest"))


def test_datasets_vl_sampler_takes_every_value_and_rejects_others():
    from datasets_vl.fewshot import sample_few_shot

    labels = [0] * 5 + [1] * 2
    ks = {v: sample_few_shot(labels, 3, seed=0, val_k=0, if_too_few=v) for v in IF_TOO_FEW if v != "error"}
    assert ks["largest"].k == 2 and len(ks["largest"].train) == 4
    assert len(ks["all"].train) == 5  # class 0: 3, short class 1: both of its rows
    with pytest.raises(ConfigError, match="if_too_few must be one of"):
        sample_few_shot(labels, 1, seed=0, if_too_few="most")


def test_text_sampler_rejects_others():
    from text_mpt.data import _few_shot_index
    from text_mpt.tasks import Example

    exs = [Example(f"x{i}", ["no", "yes"], i % 2) for i in range(6)]
    for value in IF_TOO_FEW:
        assert len(_few_shot_index(exs, 2, seed=0, if_too_few=value)) == 4
    with pytest.raises(ConfigError, match="few_shot_if_too_few must be one of"):
        _few_shot_index(exs, 2, seed=0, if_too_few="most")


def test_clip_config_takes_its_subset_and_names_its_key():
    from mvlpt.clip.pipeline.run_config import load_run_config

    for value in ("error", "largest"):
        assert load_run_config(None, [f"data.if_too_few={value}"]).data.if_too_few == value
    with pytest.raises(ConfigError, match=r"data\.if_too_few.*'error', 'largest'.*found 'all'"):
        load_run_config(None, ["data.if_too_few=all"])
