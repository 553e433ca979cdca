"""Model folders on the Hugging Face Hub (the optional extra ``pip install "tgan-music[hub]"``).

- ``tgan.load("org/name")``: a Hub model id that is not a local path is fetched with
  ``huggingface_hub.snapshot_download`` (only the model folder's files), through the Hub's cache;
  ``HF_HUB_OFFLINE=1`` (and ``HF_HUB_CACHE`` / ``HF_HOME``) are honoured as everywhere else.
- ``python -m tgan.export RUN --out DIR --push-to-hub org/name``: writes the folder, then creates
  the repository if needed and uploads it (``push_to_hub``), with the token of ``hf auth login``
  or ``HF_TOKEN``.
"""
from __future__ import annotations

import re
from pathlib import Path

# What a model folder holds (python -m tgan.export): the only files fetched.
MODEL_FILES = ["config.json", "model.safetensors", "README.md", "discriminator.safetensors",
               "critic.json", "critic.safetensors"]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def is_hub_id(name) -> bool:
    """Whether ``name`` reads as a Hub model id (``org/name``) rather than a local path: two
    parts, no path of that name exists here."""
    s = str(name)
    return bool(_HUB_ID.fullmatch(s)) and not Path(s).exists()


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ValueError("loading or pushing Hub models needs huggingface_hub: "
                         "pip install \"tgan-music[hub]\"") from None
    return huggingface_hub


def hub_folder(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of the Hub model ``repo_id`` (downloaded, or from the Hub's cache; with
    ``HF_HUB_OFFLINE=1`` from the cache only). Raises ValueError naming the id when it cannot be
    had."""
    hf = _hub()
    try:
        return Path(hf.snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=MODEL_FILES,
                                         library_name="tgan-music"))
    except Exception as e:  # huggingface_hub's own errors: not found, offline and not cached, no network
        raise ValueError(f"Hub model {repo_id!r} cannot be had ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "offline (HF_HUB_OFFLINE=1) only what the Hub cache holds is found") from None


def push_to_hub(folder, repo_id: str, api=None, private: bool = False, message: str | None = None) -> str:
    """Upload the model folder ``folder`` to the Hub model repository ``repo_id`` (created when
    missing); returns the repository's URL. ``api``: an ``huggingface_hub.HfApi`` (default a new
    one, with the login's token)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a model folder (no config.json): write it with python -m tgan.export")
    api = api if api is not None else _hub().HfApi()
    url = api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message=message or f"Upload {folder.name} (python -m tgan.export)")
    return str(url)
