"""pyproject.toml: the package installs into a fresh virtual environment and gives a working `vaedemo` command.

The fresh environment borrows this one's installed dependencies through a .pth file (reinstalling
torch would download gigabytes) and gets only the project itself, built by hatchling without build
isolation and without any index, so the test also runs offline.
"""

import os
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def test_pyproject_declares_the_same_dependencies_as_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements(ROOT / "requirements.txt")
    assert project["scripts"]["vaedemo"] == "vaedemo.__main__:main"
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "hatchling.build"
    assert any(r.startswith("hatchling") for r in _requirements(ROOT / "requirements-dev.txt"))


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_pip_install_gives_a_working_vaedemo_command(tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # This environment's packages (torch, gradio, hatchling...) become visible to the new one, after its own.
    (purelib / "borrowed-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", "--no-build-isolation", "--no-index", str(ROOT)])

    work = tmp_path / "work"  # outside the repository, so nothing is imported from the source tree
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VAEDEMO_CHECKPOINT_DIR")}
    vaedemo = str(venv / "bin" / "vaedemo")

    where = _run(
        [str(python), "-c", "import vaedemo, vaedemo.data as d; print(vaedemo.__file__, d.BUNDLED.is_file())"],
        cwd=work,
        env=env,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(purelib) and where[1] == "True"  # the installed copy, with its data
    package = purelib / "vaedemo"
    assert {"latent_map.js", "latent_map.html", "about_en.md"} <= {p.name for p in (package / "static").iterdir()}

    usage = _run([vaedemo, "--help"], cwd=work, env=env).stdout
    for command in ("serve", "train", "evaluate", "list"):
        assert command in usage
    assert "No checkpoints yet" in _run([vaedemo, "list"], cwd=work, env=env).stdout
    from vaedemo import build_model, save_checkpoint

    save_checkpoint(build_model("vae", latent_dim=2, hidden_dim=8), "here", root=work / "checkpoints")
    listing = _run([vaedemo, "list"], cwd=work, env=env).stdout
    assert listing.startswith("here ")  # an installed vaedemo keeps its checkpoints in ./checkpoints


def test_serve_subcommand_starts_the_app_on_the_given_address(monkeypatch):
    import types

    from vaedemo.__main__ import main

    seen = {}
    fake_ui = types.ModuleType("vaedemo.ui")  # stands in for the app, so Gradio is not even imported
    fake_ui.serve = lambda: seen.update(host=os.environ.get("GRADIO_SERVER_NAME"), port=os.environ.get("PORT"))
    monkeypatch.setitem(sys.modules, "vaedemo.ui", fake_ui)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert seen == {"host": "0.0.0.0", "port": "8123"}


def test_every_tracked_file_fits_a_hugging_face_space_without_git_lfs():
    """The repository deploys unchanged as a Space, and the Hub refuses a file over 10 MB that is not in Git LFS:
    the shipped weights, ONNX files, latent maps and the vendored runtime must each stay under it."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    assert any(f.suffix == ".safetensors" for f in files)
    sizes = {f.relative_to(ROOT).as_posix(): f.stat().st_size for f in files if f.is_file()}
    too_big = {name: size for name, size in sizes.items() if size > 10 * 1000 * 1000}
    assert not too_big, f"over the Hub's 10 MB limit without Git LFS: {too_big}"
