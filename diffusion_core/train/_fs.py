"""Names and folder helpers shared by the run folder (run_dir.py) and the image data (data.py, folder_data.py)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKPOINT_NAME", "MANIFEST_NAME", "RUN_MARKERS", "missing_folders", "remove_empty_folders"]

CHECKPOINT_NAME = "checkpoint.safetensors"
MANIFEST_NAME = ".diffusion-core-run.json"  # the list of the files a run wrote (run_dir.RunDir)
RUN_MARKERS = (MANIFEST_NAME, CHECKPOINT_NAME)  # a folder holding one of these is a training run's


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are empty; stop at the first that is not."""
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            return
