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
    (["--x", "a,b", "--y", "b"], r"column 'b' \(index 1\) is in both --x \(as 'b'\) and --y \(as 'b'\)"),
    (["--x", "a"], r"pyromi estimate FILE --x COLS --y COLS"),
    (["--x", "a", "--y", "b", "--level", "1.5"], r"level"),
])
def test_estimate_errors(csv_file, args, match):
    with pytest.raises(SystemExit, match=match) as e:
        main(["estimate", str(csv_file), *args])
    assert e.value.code == 2


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


# ----------------------------------------------------------------------------- issue 12: trust


def _error(argv, capsys) -> str:
    """Run the CLI in-process; it must stop with exit status 2 and exactly one ``error: ...`` line
    on stderr (any other exception would be a traceback for the user)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, (e.value.code, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("args,match", [
    (["--x", "a", "--y", "0"], r"column 'a' \(index 0\) is in both --x \(as 'a'\) and --y \(as '0'\)"),
    (["--x", "0,a", "--y", "b"], r"--x lists column 'a' \(index 0\) twice \('0' and 'a'\)"),
    (["--x", "b", "--y", "c,c"], r"--y lists column 'c' \(index 2\) twice"),
    (["--x", "a,", "--y", "b"], r"--x 'a,' has an empty column name"),
])
def test_columns_resolve_to_indices_before_the_checks(csv_file, capsys, args, match):
    """Names and indices name the same columns: the same column on both sides (by name on one, by
    index on the other), or twice in one list, is an error, not an estimate."""
    assert re.search(match, _error(["estimate", str(csv_file), *args, "--method", "cca"], capsys))


def test_duplicate_and_ambiguous_header_names(gaussian, tmp_path, capsys):
    path = tmp_path / "dup.csv"
    np.savetxt(path, gaussian, delimiter=",", header="a,b,a", comments="")
    err = _error(["estimate", str(path), "--x", "a", "--y", "b", "--method", "cca"], capsys)
    assert "names 2 columns 'a' (columns [0, 2])" in err and "select by index" in err
    assert main(["estimate", str(path), "--x", "2", "--y", "1", "--method", "cca"]) == 0  # by index: fine
    assert abs(_numbers(capsys.readouterr().out)[0]) < 0.05  # columns 2 (noise) and 1: independent
    path = tmp_path / "amb.csv"  # the column named "0" is column 1, index 0 is column "b"
    np.savetxt(path, gaussian, delimiter=",", header="b,0,a", comments="")
    err = _error(["estimate", str(path), "--x", "0", "--y", "a", "--method", "cca"], capsys)
    assert "--x '0' is ambiguous: the column named '0' is column 1, but column index 0 is 'b'" in err


def test_all_numeric_first_line(gaussian, tmp_path, capsys):
    """A first line of numbers written unlike the data (2019,2020 above decimals) stops with a
    question; --header / --no-header answer it; numbers written like the data are data, with a note."""
    hdr = tmp_path / "years.csv"
    np.savetxt(hdr, gaussian[:, :2], delimiter=",", header="2019,2020", comments="")
    err = _error(["estimate", str(hdr), "--x", "0", "--y", "1", "--method", "cca"], capsys)
    assert "first line of" in err and "--header" in err and "--no-header" in err
    assert main(["estimate", str(hdr), "--x", "2019", "--y", "2020", "--method", "cca", "--header"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("I(2019; 2020)") and "n=1000" in out
    assert main(["estimate", str(hdr), "--x", "0", "--y", "1", "--method", "cca", "--no-header"]) == 0
    assert "n=1001" in capsys.readouterr().out
    plain = tmp_path / "plain.csv"  # np.savetxt without a header
    np.savetxt(plain, gaussian, delimiter=",")
    assert main(["estimate", str(plain), "--x", "0", "--y", "1", "--method", "cca"]) == 0
    cap = capsys.readouterr()
    assert "n=1000" in cap.out and "read as data" in cap.err and "--header" in cap.err
    assert abs(_numbers(cap.out)[0] - TRUTH) < 0.1
    err = _error(["estimate", str(plain), "--x", "0", "--y", "1", "--header", "--no-header"], capsys)
    assert "not allowed with argument" in err


def _objects_npz(path):
    np.savez(path, data=np.array([[1, "a"], [2, None]], dtype=object))  # needs allow_pickle to read


@pytest.mark.parametrize("name,make,args,match", [
    ("o.npy", lambda p: np.save(p, np.array([1, "a", None], dtype=object)), [], r"holds Python objects"),
    ("g.npy", lambda p: p.write_bytes(b"not an array"), [], r"is not a NumPy \.npy file"),
    ("g.npz", lambda p: p.write_bytes(b"PK\x03\x04 garbage"), [], r"cannot read .*g\.npz as a NumPy file"),
    ("t.npz", lambda p: p.write_bytes(b"plain text"), [], r"is not a NumPy \.npz file"),
    ("o.npz", _objects_npz, ["--array", "data"], r"o\.npz\['data'\] holds Python objects"),
    ("c.npy", lambda p: np.save(p, np.ones((9, 2)) + 1j), [], r"holds complex numbers"),
    ("s.npy", lambda p: np.save(p, np.array([["1", "2"], ["3", "4"]])), [], r"holds strings"),
    ("e.csv", lambda p: p.write_text(""), [], r"e\.csv is empty"),
    ("h.csv", lambda p: p.write_text("a,b\n"), [], r"has a header line but no data rows"),
    ("r.csv", lambda p: p.write_text("a,b\n1,2\n3\n4,5\n"), [], r"r\.csv line 3 has 1 field but the header names 2"),
    ("n.csv", lambda p: p.write_text("a,b\n1,2\n3,abc\n"), [], r"line 3, column 'b': 'abc' is not a number"),
    ("m.csv", lambda p: p.write_text("a,b\n1,2\n3,\n"), [], r"line 3, column 'b': '' is not a number"),
    ("nan.csv", lambda p: p.write_text("a,b\n1,2\nnan,3\n2,2\n"), [], r"--x column 'a' has 1 NaN or infinite value\(s\) \(first in row 1, line 3"),
    ("inf.csv", lambda p: p.write_text("a,b\n1,2\n3,-inf\n2,2\n"), [], r"--y column 'b' has 1 NaN or infinite"),
    ("k.csv", lambda p: p.write_text("a,b\n1,2\n1,3\n1,4\n"), [], r"--x column 'a' is constant \(every value 1\)"),
    ("b.csv", lambda p: p.write_bytes(b"\xff\xfe\x00\x01garbage"), [], r"is not UTF-8 text"),
    ("w.npz", lambda p: np.savez(p, a=np.ones(5), b=np.arange(4.0)), ["--x", "a", "--y", "b"], r"--x has 5 rows but --y has 4"),
    ("d.npz", lambda p: np.savez(p, a=np.arange(5.0), b=np.arange(5.0) ** 2), ["--x", "a", "--y", "a"], r"array\(s\) \['a'\] are in both"),
    ("x.npy", lambda p: np.save(p, np.ones((5, 2))), ["--header"], r"--header/--no-header apply to \.csv files only"),
    ("l.csv", lambda p: p.write_text("a,b\n1,2\n2,4\n3,6\n4,8\n5,10\n"), ["--method", "cca"], r"canonical correlation between x and y is 1 .*infinite"),
])
def test_bad_files_give_one_line_errors(tmp_path, capsys, name, make, args, match):
    path = tmp_path / name
    make(path)
    argv = ["estimate", str(path), *(args if "--x" in args else ["--x", "0" if name.endswith(".npy") else "a",
                                                                 "--y", "1" if name.endswith(".npy") else "b", *args])]
    assert re.search(match, _error(argv, capsys))


@pytest.mark.parametrize("args,match", [
    (["--method", "ksg", "--k", "0"], r"argument --k: must be an integer >= 1, got 0"),
    (["--method", "ksg", "--k", "-3"], r"argument --k: must be an integer >= 1, got -3"),
    (["--method", "ksg", "--k", "999"], r"k=999 neighbours needs n >= k \+ 2 = 1001 rows, got n=1000"),
    (["--level", "0"], r"argument --level: must be strictly between 0 and 1"),
    (["--level", "1"], r"argument --level: must be strictly between 0 and 1"),
    (["--level", "nan"], r"argument --level: must be strictly between 0 and 1"),
    (["--level", "ninety"], r"argument --level: expected a number in \(0, 1\)"),
    (["--seed", "-1"], r"argument --seed: must be an integer in \[0, 4294967295\], got -1"),
    (["--method", "foo"], r"argument --method: invalid choice"),
    (["--array", "data"], r"--array selects an array inside an \.npz file"),
])
def test_bad_arguments_give_one_line_errors(csv_file, capsys, args, match):
    assert re.search(match, _error(["estimate", str(csv_file), "--x", "a", "--y", "b", *args], capsys))


def test_missing_path_and_directory(tmp_path, capsys):
    assert "no such file" in _error(["estimate", str(tmp_path / "nope.csv"), "--x", "a", "--y", "b"], capsys)
    assert "is a directory" in _error(["estimate", str(tmp_path), "--x", "a", "--y", "b"], capsys)


@pytest.mark.parametrize("args,match", [
    (["-N", "0"], r"argument --num-samples/-N: must be an integer >= 2 \(standard errors need two draws\)"),
    (["-K", "0"], r"argument --num-particles/-K: must be an integer >= 1"),
    (["-T", "0"], r"argument --num-steps/-T: must be an integer >= 1"),
    (["--train-steps", "-1"], r"argument --train-steps: must be an integer >= 0"),
    (["--seed", "-1"], r"argument --seed: must be an integer in \[0, "),
    (["--device", "gpu"], r"--device gpu: device='gpu' is not a device torch knows"),
    (["--device", "meta"], r"the demo runs on 'cpu' or 'cuda"),
])
def test_demo_bad_arguments_give_one_line_errors(capsys, args, match):
    assert re.search(match, _error(["demo", *args], capsys))


def test_demo_on_a_missing_cuda_device(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = _error(["demo", "--device", "cuda"], capsys)
    assert "CUDA is not available on this machine; pass device='cpu'" in err  # the API's DeviceError


def test_ksg_warns_about_ties_on_stderr(tmp_path, capsys):
    """Rounded data (ties): the library's warning reaches the terminal as one 'warning:' line, and
    the estimate is near the MI of the rounded pair (0.7509 nats; s.d. 0.03 over data sets)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1000)
    b = 0.9 * a + math.sqrt(1 - 0.81) * rng.standard_normal(1000)
    path = tmp_path / "rounded.csv"
    np.savetxt(path, np.c_[np.round(2 * a) / 2, np.round(2 * b) / 2], delimiter=",", header="a,b",
               comments="", fmt="%.1f")
    assert main(["estimate", str(path), "--x", "a", "--y", "b", "--method", "ksg"]) == 0
    cap = capsys.readouterr()
    warning = [line for line in cap.err.splitlines() if line.startswith("warning: ksg_mi: tied values")]
    assert len(warning) == 1 and "distinct values in 1000" in warning[0]
    assert abs(_numbers(cap.out)[0] - 0.7509) <= 0.13


def test_drop_duplicates(tmp_path, capsys):
    """200 Gaussian rows (rho 0.9, MI 0.8304 nats) repeated 10 times: KSG warns that every tie is a
    repeated row and names --drop-duplicates; with it the estimate is back near the truth (KSG's
    s.d. at n = 200 is 0.08: tolerance 0.32)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200)
    b = 0.9 * a + math.sqrt(1 - 0.81) * rng.standard_normal(200)
    path = tmp_path / "repeated.csv"
    np.savetxt(path, np.tile(np.c_[a, b], (10, 1)), delimiter=",", header="a,b", comments="")
    assert main(["estimate", str(path), "--x", "a", "--y", "b", "--method", "ksg"]) == 0
    cap = capsys.readouterr()
    assert "whole repeated row" in cap.err and "--drop-duplicates" in cap.err
    assert _numbers(cap.out)[0] > 4.0
    assert main(["estimate", str(path), "--x", "a", "--y", "b", "--method", "ksg", "--drop-duplicates"]) == 0
    cap = capsys.readouterr()
    assert "dropped 1800 repeated rows; 200 distinct rows remain" in cap.err and "warning" not in cap.err
    assert abs(_numbers(cap.out)[0] - (-0.5 * math.log(1 - 0.81))) <= 0.32


def test_errors_exit_with_status_2_without_a_traceback(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, "a"], dtype=object))
    out = subprocess.run([sys.executable, "-m", "pyromi", "estimate", str(tmp_path / "o.npy"), "--x", "0",
                          "--y", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr


def test_version(capsys):
    import pyromi

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyromi {pyromi.__version__}"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_help_and_behaviour_agree_on_bits(capsys):
    """`pyromi demo --help` lists --bits, and `pyromi demo --bits` prints the same table in bits:
    every number of each row is the nats row's divided by ln 2 (up to the 3-decimal rounding)."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--bits" in capsys.readouterr().out
    fast = ["demo", "-N", "4", "-K", "10", "--train-steps", "2", "-T", "2"]
    assert main(fast) == 0
    nats = capsys.readouterr().out
    assert main([*fast, "--bits"]) == 0
    bits = capsys.readouterr().out
    assert "20.594 bits" in bits and "14.275 nats" in nats  # the closed-form truth, 14.275 / ln 2
    for label in ("iwae, prior proposal", "iwae, AmortizedNormal q(z|x)", "ais, prior start, T=2"):
        row_n = next(line for line in nats.splitlines() if line.startswith(label))
        row_b = next(line for line in bits.splitlines() if line.startswith(label))
        vn, vb = _numbers(row_n[len(label):])[:4], _numbers(row_b[len(label):])[:4]
        assert len(vn) == 4 and vb == pytest.approx([v / math.log(2) for v in vn], abs=2e-3)


def test_run_demo_refuses_other_units():
    from pyromi.demo import run_demo
    from pyromi.errors import PyromiError

    with pytest.raises(PyromiError, match=r"units must be 'nats' or 'bits', got 'furlongs'"):
        run_demo(num_samples=4, num_particles=2, train_steps=1, ais_steps=1, units="furlongs",
                 print_fn=lambda *a: None)
