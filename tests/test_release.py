"""Release check: build the sdist and the wheel, install the wheel into a fresh virtual environment,
import it from there, run the demo, and check that the shipped weights (and their SHA-256
records), the licence and the type marker are inside."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytest.importorskip("build")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with the setuptools already installed (no network needed)
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, cwd=out)
    wheels, sdists = list(out.glob("pyromi-*.whl")), list(out.glob("pyromi-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return wheels[0], sdists[0]


def test_wheel_holds_weights_licence_and_type_marker(dist):
    wheel, sdist = dist
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        weights = [n for n in names if n.startswith("pyromi/mist/weights/")]
        assert "pyromi/py.typed" in names
        assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
        metas = [n for n in weights if n.endswith(".json")]
        assert metas, weights
        for meta in metas:  # every weights record names a file inside the wheel with that SHA-256
            record = json.loads(z.read(meta))
            target = f"pyromi/mist/weights/{record['file']}" if "file" in record else meta[:-5] + ".pt"
            assert target in names, (meta, target)
            if "sha256" in record:
                assert hashlib.sha256(z.read(target)).hexdigest() == record["sha256"], target
    with tarfile.open(sdist) as t:
        members = t.getnames()
    assert any(m.endswith("/LICENSE") for m in members) and any(m.endswith("/pyproject.toml") for m in members)


def test_wheel_installs_into_a_fresh_venv_and_runs(dist, tmp_path):
    wheel, _ = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = pathlib.Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       check=True, capture_output=True, text=True).stdout.strip())
    # the wheel alone goes into the fresh environment; its dependencies (torch, pyro, ...) are
    # read from this environment's site-packages (no network), never the source tree
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, text=True)
    deps = sysconfig.get_paths()["purelib"]
    (site / "_pyromi_test_deps.pth").write_text(deps + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    code = (
        "import pyromi, pathlib, sys; p = pathlib.Path(pyromi.__file__).resolve(); "
        f"assert str(p).startswith({str(site.resolve())!r}), p; "
        "from pyromi import mist; w = mist.load_pretrained(); print(pyromi.__version__, w.name)"
    )
    run = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    from pyromi import __version__

    assert run.stdout.split()[0] == __version__
    demo = subprocess.run([str(py), "-m", "pyromi", "demo", "-N", "32", "-K", "100", "-T", "20", "--train-steps", "50", "--seed", "0"],
                          capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "truth" in demo.stdout
    version = subprocess.run([str(py), "-m", "pyromi", "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert version.stdout.strip() == f"pyromi {__version__}"
