"""``pyromi estimate`` on small files holding a Gaussian with known MI, and its input errors."""

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from pyromi.cli import main

RHO = 0.8
TRUTH = -0.5 * math.log(1 - RHO**2)  # 0.5108 nats


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1000)
    b = RHO * a + math.sqrt(1 - RHO**2) * rng.standard_normal(1000)
    noise = rng.standard_normal(1000)  # an unrelated column
    return np.stack([a, b, noise], 1)


@pytest.fixture(scope="module")
def csv_file(gaussian, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pair.csv"
    np.savetxt(path, gaussian, delimiter=",", header="a,b,c", comments="")
    return path


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+\.\d+", text)]


def test_mist_on_a_csv_covers_the_truth(csv_file, capsys):
    assert main(["estimate", str(csv_file), "--x", "a", "--y", "b", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("I(a; b) ~= ") and "90% interval" in out and "nats" in out
    value, lo, hi = _numbers(out)[:3]
    assert lo <= TRUTH <= hi and lo <= value <= hi


def test_ksg_and_cca_and_bits(csv_file, capsys):
    main(["estimate", str(csv_file), "--x", "a", "--y", "b", "--method", "ksg"])
    ksg = _numbers(capsys.readouterr().out)[0]
    assert abs(ksg - TRUTH) < 0.1  # KSG's s.d. at n = 1000 is about 0.02 here
    main(["estimate", str(csv_file), "--x", "0", "--y", "1", "--method", "cca", "--bits"])
    out = capsys.readouterr().out
    assert "bits" in out and abs(_numbers(out)[0] - TRUTH / math.log(2)) < 0.1


def test_npy_and_npz_inputs(gaussian, tmp_path, capsys):
    np.save(tmp_path / "d.npy", gaussian)
    main(["estimate", str(tmp_path / "d.npy"), "--x", "0", "--y", "1", "--method", "cca"])
    v_npy = _numbers(capsys.readouterr().out)[0]
    np.savez(tmp_path / "d.npz", x=gaussian[:, 0], y=gaussian[:, 1])
    main(["estimate", str(tmp_path / "d.npz"), "--x", "x", "--y", "y", "--method", "cca"])
    v_npz = _numbers(capsys.readouterr().out)[0]
    np.savez(tmp_path / "e.npz", data=gaussian)
    main(["estimate", str(tmp_path / "e.npz"), "--array", "data", "--x", "0", "--y", "1", "--method", "cca"])
    v_arr = _numbers(capsys.readouterr().out)[0]
    assert v_npy == v_npz == v_arr and abs(v_npy - TRUTH) < 0.1
    # named npz blocks may be images (trailing dimensions become columns); a table must be 2-D
    np.savez(tmp_path / "img.npz", x=gaussian[:, :1].reshape(-1, 1, 1), y=gaussian[:, 1])
    main(["estimate", str(tmp_path / "img.npz"), "--x", "x", "--y", "y", "--method", "cca"])
    assert _numbers(capsys.readouterr().out)[0] == v_npy
    np.save(tmp_path / "cube.npy", gaussian.reshape(-1, 1, 2))
    with pytest.raises(SystemExit, match=r"cube.npy holds an array of shape \(\d+, 1, 2\); expected 2-D"):
        main(["estimate", str(tmp_path / "cube.npy"), "--x", "0", "--y", "1"])
    np.savez(tmp_path / "cube.npz", data=gaussian.reshape(-1, 1, 2))
    with pytest.raises(SystemExit, match=r"cube.npz\['data'\] holds an array of shape"):
        main(["estimate", str(tmp_path / "cube.npz"), "--array", "data", "--x", "0", "--y", "1"])


@pytest.mark.parametrize("args,match", [
    (["--x", "a", "--y", "zz"], r"--y names unknown column 'zz'; columns are \['a', 'b', 'c'\]"),
    (["--x", "a,b", "--y", "b"], r"column\(s\) \['b'\] are in both --x and --y"),
    (["--x", "a"], r"pyromi estimate FILE --x COLS --y COLS"),
    (["--x", "a", "--y", "b", "--level", "1.5"], r"level"),
])
def test_estimate_errors(csv_file, args, match):
    with pytest.raises(SystemExit, match=match):
        main(["estimate", str(csv_file), *args])


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        main(["estimate", str(tmp_path / "nope.csv"), "--x", "a", "--y", "b"])
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(SystemExit, match="unsupported file type '.txt'"):
        main(["estimate", str(tmp_path / "d.txt"), "--x", "0", "--y", "1"])


def test_help_explains_units_and_methods():
    out = subprocess.run([sys.executable, "-m", "pyromi", "estimate", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "nats" in out and "bits" in out and "mist" in out and "ksg" in out
    assert "None of these methods gives a bound" in out


def test_domain_of_the_shipped_weights(capsys):
    assert main(["estimate", "--domain"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"1\.\.\d+ columns per side", out) and "sha256" in out
