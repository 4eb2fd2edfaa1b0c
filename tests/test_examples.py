"""The example notebooks run from a folder that holds only the notebook (diffusion_core/examples.py).

Each notebook that samples a trained model asks ``example_checkpoint(name)`` for it: the committed file when it
runs in docs/examples/ (the site's build), else a checkpoint trained there first with ``RECIPES[name]``, the
commands of docs/examples/checkpoints/README.md. The slow test runs the digits notebook, as far as its model,
from an empty folder against the installed wheel, training the checkpoint; the other three checkpoint notebooks
reach their model through the same call with another recipe (checked here), and no notebook reads a file of the
repository.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from diffusion_core import cli, examples
from diffusion_core.errors import InvalidInput

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
ASKS = re.compile(r'example_checkpoint\("([^"]+)"\)')
COMMAND = re.compile(r"^diffusion-core train .*?--out-dir docs/examples/checkpoints/(\S+)$", re.M)


def _code(notebook: Path) -> str:
    """The notebook's code, without its Markdown cells and comments."""
    return "\n".join(line for line in notebook.read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))


def test_the_recipes_are_the_commands_that_made_the_committed_checkpoints():
    readme = (EXAMPLES / "checkpoints" / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    documented = {m.group(1): shlex.split(m.group(0))[1:] for m in COMMAND.finditer(readme)}
    assert set(documented) == set(examples.RECIPES)
    parser = cli.build_parser()
    for name, argv in documented.items():
        expected = examples.train_arguments(name, f"docs/examples/checkpoints/{name}")
        assert parser.parse_args(argv) == parser.parse_args(expected), name
        assert (EXAMPLES / "checkpoints" / name / "checkpoint.safetensors").is_file()


def test_notebooks_get_their_checkpoints_only_through_example_checkpoint():
    asked = {}
    for notebook in sorted(EXAMPLES.glob("*.py")):
        code = _code(notebook)
        assert "docs/" not in code, f"{notebook.name} reads a file of the repository"
        for name in ASKS.findall(code):
            asked.setdefault(name, []).append(notebook.name)
        if "load_checkpoint(" in code:
            assert "load_checkpoint(example_checkpoint(" in code, notebook.name
    assert set(asked) == set(examples.RECIPES), asked


def test_a_missing_checkpoint_is_trained_once_with_its_recipe(tmp_path, monkeypatch):
    monkeypatch.delenv(examples.READY, raising=False)
    calls = []

    def fake_main(argv):
        calls.append(argv)
        out = Path(argv[argv.index("--out-dir") + 1])
        out.mkdir(parents=True)
        (out / "checkpoint.safetensors").write_bytes(b"weights")
        return 0

    monkeypatch.setattr(cli, "main", fake_main)
    path = examples.example_checkpoint("digits-cond", tmp_path)
    assert path == tmp_path / "digits-cond" / "checkpoint.safetensors" and path.is_file()
    assert calls == [examples.train_arguments("digits-cond", tmp_path / "digits-cond")]
    assert "--class-cond" in calls[0]
    assert examples.example_checkpoint("digits-cond", tmp_path) == path
    assert len(calls) == 1, "a checkpoint that exists is not trained again"


def test_the_site_build_takes_ready_checkpoints_and_never_trains(tmp_path, monkeypatch):
    """docs/hooks/examples_hook.py sets READY to docs/examples/checkpoints for the notebooks' kernels."""
    monkeypatch.setattr(cli, "main", lambda argv: pytest.fail("trained"))
    monkeypatch.setenv(examples.READY, str(EXAMPLES / "checkpoints"))
    assert examples.example_checkpoint("digits") == EXAMPLES / "checkpoints" / "digits" / "checkpoint.safetensors"
    monkeypatch.setenv(examples.READY, str(tmp_path))
    with pytest.raises(InvalidInput, match="is missing, and DIFFUSION_CORE_EXAMPLE_CHECKPOINTS names a folder of "
                       "ready checkpoints, which are not trained here; make it with: diffusion-core train"):
        examples.example_checkpoint("digits")


def test_bad_names_and_failed_runs_are_reported(tmp_path, monkeypatch):
    monkeypatch.delenv(examples.READY, raising=False)
    with pytest.raises(InvalidInput, match="no example checkpoint 'mnist'; the examples use digits, digits-cond"):
        examples.example_checkpoint("mnist", tmp_path)
    monkeypatch.setattr(cli, "main", lambda argv: 2)
    with pytest.raises(RuntimeError, match="training the example checkpoint 'digits' failed .*exited with 2"):
        examples.example_checkpoint("digits", tmp_path)


def _through_checkpoint(notebook: Path) -> str:
    """The notebook's cells up to the one that gets its checkpoint (jupytext percent format: ``# %%`` cells)."""
    cells = re.split(r"^(?=# %%)", notebook.read_text(encoding="utf-8"), flags=re.M)
    last = next(i for i, cell in enumerate(cells) if "example_checkpoint(" in cell and cell.startswith("# %%\n"))
    return "".join(cells[:last + 1])


@pytest.mark.slow
def test_the_digits_notebook_trains_its_checkpoint_in_an_empty_folder(wheel_python, tmp_path):
    """Only the notebook in the folder, only the wheel installed: it trains its checkpoint and loads it.

    The run stops after the cell that loads the model. That cell is the only one that touches a file; the cells
    after it work on the loaded model and run at every site build with the same library, and the test above
    checks that no notebook reads a file of the repository. The digits checkpoint is the cheapest to train
    (1,000 steps of a small U-Net, 75 s on 2 idle cores; the swiss roll's MLP takes several times longer)."""
    (tmp_path / "digits.py").write_text(_through_checkpoint(EXAMPLES / "digits.py"), encoding="utf-8")
    # one thread: on a busy 2-core machine, two contending threads made this training about 10x slower (measured)
    proc = subprocess.run([str(wheel_python), "-I", "digits.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=3600, env={**{k: v for k, v in os.environ.items() if k != examples.READY},
                                             "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "checkpoints/digits/checkpoint.safetensors is missing; training it" in proc.stdout
    assert (tmp_path / "checkpoints" / "digits" / "checkpoint.safetensors").is_file()
    assert "trained 1000 steps" in proc.stdout       # the checkpoint cell loaded the model it trained
