"""Hub-ready model folders: the card's metadata and snippet, loading a Hub id from a pre-filled
cache offline, and the upload call (given a fake API object)."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tgan.export import export, main as export_main
from tgan.hub import MODEL_FILES, is_hub_id, push_to_hub

hf = pytest.importorskip("huggingface_hub")
ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def test_the_card_carries_hub_metadata_and_a_snippet_that_runs_as_written(run, make_run, tmp_path):
    folder = export(run, tmp_path / "model")
    text = (folder / "README.md").read_text()
    card = hf.ModelCard(text)
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] and data["license_link"].startswith("https://")
    assert data["library_name"] == "tgan" and "symbolic-music" in data["tags"] and data["datasets"]
    for section in ("## Training", "## Intended use and limitations", "## Citation", "## License"):
        assert section in text
    assert "Symbolic Music Generation with Transformer-GANs" in text
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, check=True, env=_env(), capture_output=True)
    assert sorted(p.name for p in tmp_path.glob("sample_*.mid")) == ["sample_0.mid", "sample_1.mid"]
    # world-readable files in a world-readable folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in folder.iterdir())
    maestro = tmp_path / "maestro-v3.0.0"
    maestro.mkdir()
    m = hf.ModelCard((export(make_run(tmp_path / "m", data=str(maestro)), tmp_path / "mm") / "README.md")
                     .read_text()).data.to_dict()
    assert m["license"] == "cc-by-nc-sa-4.0" and m["datasets"] == ["maestro"]


def test_a_hub_id_loads_from_a_prefilled_cache_offline(run, tmp_path):
    folder = export(run, tmp_path / "model", hub_id="tgan-test/bach-tiny")
    assert "tgan.load('tgan-test/bach-tiny')" in (folder / "README.md").read_text()
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tgan-test--bach-tiny"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = ("import tgan; m = tgan.load('tgan-test/bach-tiny', 'cpu'); "
            "print(len(m.generate(num=1, length=20, seed=0)[0].tokens))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(HF_HUB_OFFLINE="1",
                         HF_HUB_CACHE=str(tmp_path / "hub")), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "20"
    missing = subprocess.run([sys.executable, "-c", "import tgan; tgan.load('tgan-test/absent')"], cwd=tmp_path,
                             env=_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub")),
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "Hub model 'tgan-test/absent' cannot be had" in missing.stderr
    assert is_hub_id("org/name") and not is_hub_id(str(tmp_path)) and not is_hub_id("a/b/c")


def test_push_to_hub_creates_the_repository_and_uploads_the_folder(run, tmp_path):
    calls = []

    class FakeApi:
        def create_repo(self, **kw):
            calls.append(("create_repo", kw))
            return f"https://huggingface.co/{kw['repo_id']}"

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            assert sorted(os.listdir(kw["folder_path"])) == ["README.md", "config.json", "model.safetensors"]

    folder = export(run, tmp_path / "model", hub_id="me/bach")
    assert push_to_hub(folder, "me/bach", api=FakeApi(), private=True) == "https://huggingface.co/me/bach"
    assert calls[0] == ("create_repo", {"repo_id": "me/bach", "repo_type": "model", "exist_ok": True, "private": True})
    assert calls[1][1]["repo_id"] == "me/bach" and calls[1][1]["folder_path"] == str(folder)
    assert set(p.name for p in folder.iterdir()) <= set(MODEL_FILES)
    with pytest.raises(ValueError, match="not a model folder"):
        push_to_hub(tmp_path, "me/bach", api=FakeApi())


def test_export_cli_pushes_after_writing(run, tmp_path, monkeypatch, capsys):
    pushed = []
    monkeypatch.setattr("tgan.hub.push_to_hub", lambda folder, repo, private=False: pushed.append((folder, repo))
                        or f"https://huggingface.co/{repo}")
    assert export_main([str(run), "--out", str(tmp_path / "m"), "--push-to-hub", "me/bach"]) == 0
    assert pushed == [(tmp_path / "m", "me/bach")]
    assert "uploaded to https://huggingface.co/me/bach" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format"] == 1
