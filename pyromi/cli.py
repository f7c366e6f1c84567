"""Command line: ``pyromi demo`` and ``pyromi estimate`` (or ``python -m pyromi ...``).

Every input error ends the command with one line ``error: ...`` on stderr (naming the argument
and the fix) and exit status 2, never a traceback; warnings print as ``warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np

UNITS = "All values are in nats (natural-log units; 1 nat = 1/ln 2 = 1.4427 bits)."
#: for the commands that have --bits (demo, estimate); the top-level help names them
UNITS_BITS_FLAG = (
    "All values are in nats (natural-log units; 1 nat = 1/ln 2 = 1.4427 bits; --bits converts)."
)

ESTIMATE_HELP = f"""\
Estimate the mutual information I(X; Y) between two groups of columns of a data file.

Files: .csv, .npy (a 2-D array; columns by index) or .npz (either named arrays, --x x --y y
selecting whole arrays, or one 2-D array whose columns are selected by index with --array NAME).
Columns are named or numbered from 0 (--x a,b or --x 0,1); a column may not appear twice, nor on
both sides. Cells must be finite numbers: drop or impute rows with missing values first.

CSV header: a first line with any non-numeric cell is the header (column names). A first line of
numbers only is read as data when its cells are written like the rows below it (integers above
integers, decimals above decimals; a note says so); if they are not (e.g. 2019,2020 above
decimals), the command stops and asks for --header (the line names the columns) or --no-header
(it is data); either flag overrides the detection.

Methods:
  mist  the learned estimator shipped with pyromi (MIST, Gritsai et al. 2025): a median and a
        --level interval (default 90%) of the MI given the sample, in one forward pass. Best when
        no density is known; its training domain is printed by `pyromi estimate --domain`.
  ksg   the Kraskov-Stoegbauer-Grassberger kNN estimator (k = --k neighbours, max-norm) on the
        full X and Y blocks: a point estimate without an interval; biased low in high dimension.
        Tied values are broken by tiny seeded noise (a warning says so): the estimate is then the
        MI of the values as given (discrete or rounded); --drop-duplicates first if repeated rows
        are duplicated records rather than a discrete distribution.
  cca   Gaussian MI from canonical correlations: exact for jointly Gaussian data only.

{UNITS_BITS_FLAG} None of these methods gives a bound: for bounds from a model's densities use the Python API
(pyromi.mutual_information with bound='ais', 'iwae', 'giwae', ...).
"""

#: the command line's seed range, [0, 2**32): a choice of the CLI (numpy and torch take larger
#: seeds; the Python API takes any int in [0, 2**63))
MAX_SEED = 2**32 - 1


class CLIError(SystemExit):
    """An input error: ``main`` prints ``error: <message>`` to stderr and exits with status 2."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return f"error: {self.message}"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise CLIError(f"{message} (see '{self.prog} --help')")


def _int_at_least(lo: int, hi: int | None = None, why: str = ""):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be an integer {rng}{why}, got {v}")
        return v

    return parse


def _level(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) such as 0.9, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be strictly between 0 and 1 (the interval's coverage, e.g. 0.9 for 90%), got {text}"
        )
    return v


def _columns(spec: str, flag: str) -> list[str]:
    cols = [c.strip() for c in spec.split(",")]
    if not spec.strip() or any(not c for c in cols):
        raise CLIError(f"{flag} {spec!r} has an empty column name; give comma-separated names or indices, e.g. {flag} a,b")
    return cols


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


_INT = re.compile(r"\s*[+-]?\d+\s*")


def _kind(cell: str) -> str:
    """How a numeric cell is written: ``int`` (digits only) or ``real`` (decimal point, exponent,
    nan, inf)."""
    return "int" if _INT.fullmatch(cell) else "real"


class Table:
    """A loaded data file: column ``names`` and a 2-D float ``data`` array (or, for an .npz of
    named arrays, ``arrays``: the lazily read NpzFile); ``where(i)`` says where data row i is."""

    def __init__(self, path: Path, names: list[str], data: np.ndarray | None = None, arrays=None,
                 lines: list[int] | None = None):
        self.path, self.names, self.data, self.arrays = path, names, data, arrays
        self.lines = lines  # csv: the file line of each data row

    def where(self, i: int) -> str:
        return f"row {i}" if self.lines is None else f"row {i}, line {self.lines[i]} of {self.path}"


def _read_csv(path: Path, header: bool | None) -> Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows, lines = [], []
            for r in reader:
                if r and any(c.strip() for c in r):
                    rows.append(r)
                    lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not UTF-8 text; is it really a .csv file? (binary arrays: save as .npy)") from None
    except (OSError, csv.Error) as e:
        raise CLIError(f"cannot read {path}: {e}") from None
    if not rows:
        raise CLIError(f"{path} is empty: it needs rows of comma-separated numbers (optionally a header line first)")
    first = [c.strip() for c in rows[0]]
    numeric = all(_is_number(c) for c in first)
    if header is None:
        if not numeric:
            header = True
        else:
            mismatch = []
            for j, c in enumerate(first):
                below = {_kind(r[j]) for r in rows[1:1001] if j < len(r) and _is_number(r[j].strip())}
                if below and _kind(c) not in below:
                    mismatch.append(j)
            if mismatch:
                raise CLIError(
                    f"the first line of {path} ({','.join(first)}) holds only numbers, but written "
                    f"unlike the rows below it (column(s) {mismatch}: integers above decimals or the "
                    f"reverse), so it may be a header: pass --header if it names the columns, or "
                    f"--no-header if it is a data row"
                )
            header = False
            print(f"note: the first line of {path} holds numbers written like the rest, so it is read as "
                  f"data (columns 0..{len(first) - 1}); pass --header if it names the columns",
                  file=sys.stderr)
    if header:
        names = list(first)
        if names and names[0].startswith("#"):  # np.savetxt's default comments='# '
            names[0] = names[0].lstrip("#").strip()
        body, body_lines = rows[1:], lines[1:]
        if not body:
            raise CLIError(f"{path} has a header line but no data rows")
    else:
        names, body, body_lines = [str(i) for i in range(len(first))], rows, lines
    data = np.empty((len(body), len(names)))
    for i, (r, ln) in enumerate(zip(body, body_lines)):
        if len(r) != len(names):
            raise CLIError(
                f"{path} line {ln} has {len(r)} field{'' if len(r) == 1 else 's'} but {'the header names' if header else 'line ' + str(lines[0]) + ' has'} "
                f"{len(names)}; every row needs one value per column"
            )
        for j, c in enumerate(r):
            try:
                data[i, j] = float(c)
            except ValueError:
                if not header and ln == lines[0]:
                    hint = f" (is line {ln} a header? then leave out --no-header)"
                else:
                    hint = ("; MI estimation needs numbers: drop or impute missing values, encode "
                            "categories as numbers")
                raise CLIError(f"{path} line {ln}, column {names[j]!r}: {c.strip()!r} is not a number{hint}") from None
    return Table(path, names, data, lines=body_lines)


def _load_npy_like(loader, what: str):
    """Call ``loader`` (reads an array from a .npy/.npz), turning numpy's errors into one line."""
    import pickle
    import zipfile

    try:
        return loader()
    except ValueError as e:
        if "pickle" in str(e) or "Object arrays" in str(e):
            raise CLIError(
                f"{what} holds Python objects (an object array), not numbers; save a numeric array, "
                "e.g. np.save(path, np.asarray(a, dtype=float))"
            ) from None
        raise CLIError(f"cannot read {what}: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, KeyError) as e:
        raise CLIError(f"cannot read {what} as a NumPy file ({type(e).__name__}: {e}); is it really a .npy/.npz?") from None


def load_table(path: str | Path, array: str | None = None, header: bool | None = None) -> Table:
    """Read a data file into a :class:`Table` (2-D float data with column names, or the named
    arrays of an .npz without ``array``). Raises :class:`CLIError` with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise CLIError(f"no such file: {path}")
    if path.is_dir():
        raise CLIError(f"{path} is a directory; give a .csv, .npy or .npz file")
    suffix = path.suffix.lower()
    if header is not None and suffix != ".csv":
        raise CLIError(f"--header/--no-header apply to .csv files only, not {suffix or 'this file'}")
    if array is not None and suffix != ".npz":
        raise CLIError(f"--array selects an array inside an .npz file; {path} is not one")
    if suffix == ".csv":
        return _read_csv(path, header)
    if suffix in (".npy", ".npz"):
        magic = b"\x93NUMPY" if suffix == ".npy" else b"PK"
        try:
            with open(path, "rb") as f:
                start = f.read(len(magic))
        except OSError as e:
            raise CLIError(f"cannot read {path}: {e}") from None
        if start != magic:
            raise CLIError(
                f"{path} is not a NumPy {suffix} file (it does not start like one); write it with "
                f"{'np.save' if suffix == '.npy' else 'np.savez'}, or give a .csv"
            )
    if suffix == ".npy":
        data = _as_table(_load_npy_like(lambda: np.load(path, allow_pickle=False), str(path)), str(path))
        return Table(path, [str(i) for i in range(data.shape[1])], data)
    if suffix == ".npz":
        z = _load_npy_like(lambda: np.load(path, allow_pickle=False), str(path))
        if not hasattr(z, "files"):
            raise CLIError(f"{path} is a single .npy array saved under an .npz name; rename it to .npy")
        if array is not None:
            if array not in z.files:
                raise CLIError(f"{path} has no array {array!r}; it has {z.files}")
            where = f"{path}[{array!r}]"
            data = _as_table(_load_npy_like(lambda: z[array], where), where)
            return Table(path, [str(i) for i in range(data.shape[1])], data)
        return Table(path, list(z.files), arrays=z)
    raise CLIError(f"unsupported file type {suffix!r}; use .csv, .npy or .npz")


def _as_table(a: np.ndarray, where: str, flatten: bool = False) -> np.ndarray:
    """``a`` as a float64 (rows, columns) table: a 1-D array is one column; with ``flatten`` the
    trailing dimensions of a higher-dimensional array become columns, else it is an error."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        what = {"c": "complex numbers", "U": "strings", "S": "bytes", "M": "dates", "m": "time spans",
                "V": "records (a structured array)", "O": "Python objects"}.get(a.dtype.kind, "non-numbers")
        raise CLIError(f"{where} holds {what} (dtype {a.dtype}); MI estimation needs a real numeric array")
    if a.ndim == 0:
        raise CLIError(f"{where} holds a single number; expected 2-D (rows, columns)")
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim > 2 and flatten:
        a = a.reshape(a.shape[0], -1)
    if a.ndim != 2:
        raise CLIError(f"{where} holds an array of shape {a.shape}; expected 2-D (rows, columns)")
    return a.astype(np.float64)


def _resolve(table: Table, cols: list[str], flag: str) -> list[int]:
    """Column indices for the names/indices ``cols`` of ``flag``: an unknown, ambiguous or
    repeated column is an error."""
    names = table.names
    idx = []
    for c in cols:
        by_name = [j for j, nm in enumerate(names) if nm == c]
        by_index = int(c) if c.isdigit() and int(c) < len(names) else None
        if len(by_name) > 1:
            raise CLIError(
                f"{flag} {c!r}: the header of {table.path} names {len(by_name)} columns {c!r} (columns "
                f"{by_name}); rename them in the file or select by index (e.g. {flag} {by_name[0]})"
            )
        if by_name and by_index is not None and by_name[0] != by_index:
            raise CLIError(
                f"{flag} {c!r} is ambiguous: the column named {c!r} is column {by_name[0]}, but column "
                f"index {c} is {names[by_index]!r}; select by another name or rename the column"
            )
        if by_name:
            idx.append(by_name[0])
        elif by_index is not None:
            idx.append(by_index)
        else:
            raise CLIError(
                f"{flag} names unknown column {c!r}; columns are {names} (or indices 0..{len(names) - 1})"
            )
    seen: dict[int, str] = {}
    for c, j in zip(cols, idx):
        if j in seen:
            same = f"twice ({seen[j]!r} and {c!r})" if seen[j] != c else "twice"
            raise CLIError(f"{flag} lists column {names[j]!r} (index {j}) {same}; list each column once")
        seen[j] = c
    return idx


def _select_arrays(table: Table, cols: list[str], flag: str) -> tuple[np.ndarray, list[str]]:
    """npz of named arrays: each name is a whole block (trailing dimensions become columns)."""
    missing = [c for c in cols if c not in table.names]
    if missing:
        raise CLIError(f"{flag} names unknown array(s) {missing}; {table.path} has {table.names}")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise CLIError(f"{flag} lists array(s) {dup} more than once; list each array once")
    blocks = []
    for c in cols:
        where = f"{table.path}[{c!r}]"
        blocks.append(_as_table(_load_npy_like(lambda: table.arrays[c], where), where, flatten=True))
    rows = {c: b.shape[0] for c, b in zip(cols, blocks)}
    if len(set(rows.values())) > 1:
        raise CLIError(f"{flag} arrays have different numbers of rows {rows}; row i of each must be the same sample")
    labels = [c if b.shape[1] == 1 else f"{c}[:, {j}]" for c, b in zip(cols, blocks) for j in range(b.shape[1])]
    return np.concatenate(blocks, 1), labels


def _check_values(table: Table, labels: list[str], block: np.ndarray, flag: str) -> None:
    """Selected columns must be finite and not constant: a one-line error naming the column."""
    for j, label in enumerate(labels):
        col = block[:, j]
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            where = table.where(int(bad[0]))
            raise CLIError(
                f"{flag} column {label!r} has {len(bad)} NaN or infinite value(s) (first in {where}); "
                "drop those rows (or impute them) first"
            )
    for j, label in enumerate(labels):
        col = block[:, j]
        if col.size and col.min() == col.max():
            raise CLIError(
                f"{flag} column {label!r} is constant (every value {col[0]:g}): it carries no information; "
                f"leave it out of {flag}"
            )


@contextlib.contextmanager
def _warnings_as_lines():
    """Show warnings raised inside as one ``warning: ...`` line each on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stdout.flush()  # keep the order of printed lines when both streams go to a terminal
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show
        yield


def run_estimate(args) -> int:
    if args.domain:
        from .mist import load_pretrained

        pre = load_pretrained()
        cfg = pre.config.to_dict()
        print(f"MIST weights {pre.name} (sha256 {pre.sha256[:16]}...): 1..{cfg['d_max']} columns "
              f"per side (dx != dy allowed), n >= {cfg['n_min']} rows (above {cfg['n_max']}: "
              f"subsample-and-combine), inputs normalised by {cfg['norm']}; values in nats. 99% of the "
              f"training MI was below {pre.trained_mi_q99} nats (estimates above it warn: extrapolation)."
              )
        if pre.head is not None:
            print(f"Hybrid: {len(pre.head.heads)} quantile heads read the set network's quantiles and classical "
                  f"statistics of the normal scores (KSG at k = {list(pre.head.cfg.ksg_ks)}, Gaussian-copula MI); "
                  f"their disagreement widens the interval.")
        bench = pre.meta.get("benchmark")
        if bench:
            print(f"Measured 90%-interval coverage: {bench['coverage90_in_distribution']:.2f} on held-out sets "
                  f"of the training families, {bench['coverage90_unseen']:.2f} on unseen families; MSE "
                  f"{bench['mse_in_distribution']:.2f} / {bench['mse_unseen']:.2f} nats^2 ({bench['source']}).")
        return 0
    if args.file is None or args.x is None or args.y is None:
        raise CLIError("pyromi estimate FILE --x COLS --y COLS (see --help)")
    xcols, ycols = _columns(args.x, "--x"), _columns(args.y, "--y")
    table = load_table(args.file, args.array, args.header)
    if table.arrays is not None:
        overlap = sorted(set(xcols) & set(ycols))
        if overlap:
            raise CLIError(f"array(s) {overlap} are in both --x and --y; the two sides must be different variables")
        x, xlabels = _select_arrays(table, xcols, "--x")
        y, ylabels = _select_arrays(table, ycols, "--y")
        if x.shape[0] != y.shape[0]:
            raise CLIError(f"--x has {x.shape[0]} rows but --y has {y.shape[0]}; row i of each must be the same sample")
        _check_values(table, xlabels, x, "--x")
        _check_values(table, ylabels, y, "--y")
    else:
        xi, yi = _resolve(table, xcols, "--x"), _resolve(table, ycols, "--y")
        both = [j for j in xi if j in yi]
        if both:
            j = both[0]
            raise CLIError(
                f"column {table.names[j]!r} (index {j}) is in both --x (as {xcols[xi.index(j)]!r}) and --y "
                f"(as {ycols[yi.index(j)]!r}); the two sides must be different columns (the MI of a "
                "column with itself is infinite)"
            )
        x, y = table.data[:, xi], table.data[:, yi]
        _check_values(table, [table.names[j] for j in xi], x, "--x")
        _check_values(table, [table.names[j] for j in yi], y, "--y")
    if args.drop_duplicates:
        _, first = np.unique(np.concatenate([x, y], 1), axis=0, return_index=True)
        keep = np.sort(first)
        print(f"note: --drop-duplicates dropped {x.shape[0] - keep.size} repeated rows; {keep.size} distinct "
              f"rows remain", file=sys.stderr)
        x, y = x[keep], y[keep]
    scale = 1.0 / math.log(2.0) if args.bits else 1.0
    unit = "bits" if args.bits else "nats"
    what = f"I({', '.join(xcols)}; {', '.join(ycols)})"
    from .errors import PyromiError

    try:
        if args.method == "mist":
            from .mist import estimate

            est = estimate(x, y, level=args.level, seed=args.seed, observed=tuple(xcols), latent=tuple(ycols))
            v = [est.value, est.lower] + ([] if est.upper is None else [est.upper])
            _finite(v, "mist")
            hi = "unbounded)" if est.upper is None else f"{scale * est.upper:.4f}]"
            print(f"{what} ~= {scale * est.value:.4f} {unit}, {100 * est.level:.0f}% interval "
                  f"[{scale * est.lower:.4f}, {hi} (mist, n={est.num_samples}, "
                  f"{est.diagnostics['milliseconds']:.0f} ms)")
        elif args.method == "ksg":
            from .baselines import ksg_mi

            v = ksg_mi(x, y, k=args.k, seed=args.seed or 0)
            _finite([v], "ksg")
            print(f"{what} ~= {scale * v:.4f} {unit} (ksg, k={args.k}, n={x.shape[0]}; a point estimate "
                  "without an interval, biased low in high dimension: --method mist gives an interval)")
        else:
            from .baselines import cca_mi

            v = cca_mi(x, y)
            _finite([v], "cca")
            print(f"{what} ~= {scale * v:.4f} {unit} (cca, n={x.shape[0]}; exact for Gaussian data only)")
    except PyromiError as e:
        raise CLIError(str(e)) from None
    return 0


def _finite(values, method: str) -> None:
    if not all(v is not None and math.isfinite(v) for v in values):
        raise CLIError(f"{method} returned a non-finite value ({values}); this is a bug, please report it with the data")


def run_demo_command(args) -> int:
    from .demo import run_demo
    from .errors import DeviceError, PyromiError

    try:
        run_demo(args.num_samples, args.num_particles, args.train_steps, args.seed,
                 ais_steps=args.num_steps, device=args.device, units="bits" if args.bits else "nats")
    except DeviceError as e:
        raise CLIError(f"--device {args.device}: {e}") from None
    except PyromiError as e:
        raise CLIError(str(e)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="pyromi",
        description="Mutual-information bounds and estimates for Pyro models and data. " + UNITS
        + " `pyromi demo --bits` and `pyromi estimate --bits` print bits.",
    )
    parser.add_argument("--version", action="version", version=f"pyromi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="bounds on a built-in linear-Gaussian model with closed-form MI, beside the truth",
        description="Bounds on a built-in linear-Gaussian model (closed-form MI 14.275 nats), "
        "printed beside the truth, each with its standard error. " + UNITS_BITS_FLAG,
    )
    demo.add_argument("--num-samples", "-N", type=_int_at_least(2, why=" (standard errors need two draws)"),
                      default=256, help="joint draws N (default 256, at least 2)")
    demo.add_argument("--num-particles", "-K", type=_int_at_least(1), default=1000,
                      help="proposal draws K (default 1000)")
    demo.add_argument("--train-steps", type=_int_at_least(0), default=1500,
                      help="steps to fit q(z|x) (default 1500; 0 leaves it untrained)")
    demo.add_argument("--num-steps", "-T", type=_int_at_least(1), default=300,
                      help="annealing transitions T for the AIS row (default 300)")
    demo.add_argument("--seed", type=_int_at_least(0, MAX_SEED - 2), default=0,
                      help=f"seed in [0, {MAX_SEED - 2}] (default 0; the CLI's range, not a numpy "
                      "limit: the Python API takes seeds up to 2**63 - 1)")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    demo.add_argument("--bits", action="store_true", help="print bits instead of nats")

    est = sub.add_parser(
        "estimate",
        help="estimate I(X; Y) between columns of a .csv/.npy/.npz file (MIST, KSG or CCA)",
        description=ESTIMATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    est.add_argument("file", nargs="?", help="data file: .csv, .npy or .npz")
    est.add_argument("--x", help="X columns: comma-separated names or indices (npz: array names)")
    est.add_argument("--y", help="Y columns, as --x")
    est.add_argument("--method", choices=("mist", "ksg", "cca"), default="mist",
                     help="estimator (default mist)")
    est.add_argument("--level", type=_level, default=0.9, help="MIST interval coverage in (0, 1) (default 0.9)")
    est.add_argument("--k", type=_int_at_least(1), default=5, help="KSG neighbours, >= 1 (default 5)")
    est.add_argument("--array", help=".npz: take columns of this 2-D array")
    hdr = est.add_mutually_exclusive_group()
    hdr.add_argument("--header", dest="header", action="store_const", const=True, default=None,
                     help=".csv: the first line names the columns (default: detected, see above)")
    hdr.add_argument("--no-header", dest="header", action="store_const", const=False,
                     help=".csv: the first line is data; columns are 0, 1, ...")
    est.add_argument("--drop-duplicates", action="store_true",
                     help="drop repeated rows (of the selected columns) first: for duplicated records, "
                     "not for discrete variables")
    est.add_argument("--seed", type=_int_at_least(0, MAX_SEED), default=None,
                     help=f"seed in [0, {MAX_SEED}] (MIST's block split, KSG's tie-breaking); "
                     "the CLI's range, not a numpy limit: the Python API takes seeds up to 2**63 - 1")
    est.add_argument("--bits", action="store_true", help="print bits instead of nats")
    est.add_argument("--domain", action="store_true", help="print the shipped MIST model's input domain and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        with _warnings_as_lines():
            args = build_parser().parse_args(argv)
            if args.command == "demo":
                return run_demo_command(args)
            return run_estimate(args)
    except CLIError as e:
        print(str(e), file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
