"""The command-line part of the bad-input matrix: what a user sees, for both CLIs."""

from pathlib import Path

import pytest

from mvlpt.clip import cli as clip_cli
from text_mpt import cli as text_cli

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "configs/clip/quickstart.yaml")
TINY_TEXT = str(ROOT / "configs/text/tiny/teachers.yaml")


def _run(main, argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse-style exits
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("main, argv", [
    (clip_cli.main, ["teachers", "--config", "no/such/config.yaml"]),
    (text_cli.main, ["teachers", "no/such/config.yaml"]),
])
def test_nonexistent_config_path(main, argv, capsys):
    rc, err = _run(main, argv, capsys)
    assert rc not in (0, None)
    assert "config file not found: no/such/config.yaml" in err


def test_override_of_unknown_key_names_the_nearest(capsys):
    rc, err = _run(clip_cli.main, ["teachers", "--config", QUICK, "trian.max_steps=3"], capsys)
    assert rc not in (0, None) and "unknown key 'trian'; did you mean 'train'?" in err
    rc, err = _run(text_cli.main, ["teachers", TINY_TEXT, "prompt.lenght=3"], capsys)
    assert rc not in (0, None) and "unknown key 'lenght' under 'prompt'; did you mean 'length'?" in err


def test_wrong_type_in_override(capsys):
    rc, err = _run(clip_cli.main, ["teachers", "--config", QUICK, "train.max_steps=many"], capsys)
    assert rc not in (0, None) and "max_steps: expected an int, found 'many'" in err
