from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.cli import EXIT_ERROR, EXIT_INTERRUPTED, main

N_A, N_B = 300, 270  # slice B lacks 10 % of the cells, so the matching is partial on A


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two small slices written as .h5ad files: (folder, a.h5ad, b.h5ad)."""
    folder = tmp_path_factory.mktemp("inputs")
    a, b = hr.datasets.simulate_slices(n_obs=N_A, n_genes=20, missing=0.1, seed=0)
    assert (a.n_obs, b.n_obs) == (N_A, N_B)
    a.write_h5ad(folder / "a.h5ad")
    b.write_h5ad(folder / "b.h5ad")
    return folder, folder / "a.h5ad", folder / "b.h5ad"


@pytest.fixture(scope="module")
def aligned(inputs, tmp_path_factory):
    """One ``hiref align`` run on the inputs: (stdout, out folder, A output, B output, input digests before)."""
    folder, a, b = inputs
    before = _digest(folder)
    out = tmp_path_factory.mktemp("aligned") / "new" / "a.h5ad"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["align", str(a), str(b), "--out", str(out), "--use-rep", "spatial", "--quiet"])
    assert status == 0
    return stdout.getvalue(), out.parent, out, out.with_name("a_b.h5ad"), before


def _exact_cost(X, Y):
    C = cdist(X, Y, "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    return C[rows, cols].mean()


def _one_line_error(text, command):
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith(f"hiref {command}: error: ")
    return lines[0]


# ------------------------------------------------------------------------------------------- demo


def test_demo_reports_gap_and_writes_png(tmp_path, capsys):
    out = tmp_path / "figs" / "demo.png"
    assert main(["demo", "--n", "300", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "gap to exact" in text
    gap = float(text.split("gap to exact:")[1].split("%")[0])
    assert 0.0 <= gap < 3.0
    # The printed figures are the real ones: hiref's cost and scipy's exact optimum of the same pair.
    from hiref._demo import PAIRS

    X, Y = PAIRS["halfmoon_scurve"](300, seed=0)
    best = _exact_cost(X, Y)
    printed_hiref = float(text.split("hiref        cost")[1].split()[0])
    printed_exact = float(text.split("exact (LSA)  cost")[1].split()[0])
    assert printed_exact == pytest.approx(best, rel=1e-5)
    assert printed_hiref == pytest.approx(hr.solve(X, Y, progress=False).cost, rel=1e-5)
    assert gap == pytest.approx(100 * (printed_hiref / printed_exact - 1), abs=2e-3)
    image = mpimg.imread(out)
    assert image.shape[0] > 200
    assert image.shape[1] > 600
    assert list(tmp_path.joinpath("figs").iterdir()) == [out]  # no temporary file left behind


def test_demo_errors(tmp_path, capsys):
    assert main(["demo", "--n", "0", "--out", str(tmp_path / "x.png"), "--quiet"]) == 2
    assert "`n` must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit) as info:
        main(["demo", "--dataset", "nope"])
    assert info.value.code == EXIT_ERROR
    assert "argument --dataset: invalid choice: 'nope'" in _one_line_error(capsys.readouterr().err, "demo")


def test_console_script_runs():
    cmd = [sys.executable, "-m", "hiref.cli", "--version"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert result.stdout.startswith("hiref ")


# ------------------------------------------------------------------------------------------ align


def test_align_writes_both_outputs(inputs, aligned):
    folder, a_in, b_in = inputs
    stdout, out_dir, out_a, out_b, before = aligned
    assert _digest(folder) == before  # inputs untouched
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.h5ad", "a_b.h5ad"]  # no temporary files
    assert str(out_a) in stdout
    assert str(out_b) in stdout
    assert f"matched {N_B} pairs" in stdout

    a, b = ad.read_h5ad(out_a), ad.read_h5ad(out_b)
    a0, b0 = ad.read_h5ad(a_in), ad.read_h5ad(b_in)
    assert list(a.obs_names) == list(a0.obs_names)
    assert list(b.obs_names) == list(b0.obs_names)
    assert a.uns["hiref"]["params"]["use_rep"] == "spatial"
    assert (a.uns["hiref"]["role"], b.uns["hiref"]["role"]) == ("source", "target")

    # A valid matching: every cell of the smaller B has one partner, partners exist and are distinct.
    perm_a, perm_b = np.asarray(a.uns["hiref"]["partner"]), np.asarray(b.uns["hiref"]["partner"])
    assert (perm_b >= 0).all()
    assert len(np.unique(perm_b)) == N_B
    assert perm_b.max() < N_A
    assert (perm_a >= 0).sum() == N_B
    matched = np.flatnonzero(perm_a >= 0)
    np.testing.assert_array_equal(perm_b[perm_a[matched]], matched)  # both directions agree
    names_a = a.obs["hiref_match"]
    assert names_a.notna().sum() == N_B
    assert set(names_a.dropna()) <= set(b.obs_names)
    assert names_a.dropna().is_unique
    np.testing.assert_array_equal(b.obs["hiref_match"].astype(str), a.obs_names[perm_b])
    assert a.obs_names[matched].tolist() == b.obs["hiref_match"].iloc[perm_a[matched]].astype(str).tolist()
    # The partner's coordinates travel with the matching.
    np.testing.assert_allclose(b.obsm["hiref_partner_spatial"], a.obsm["spatial"][perm_b])

    # The right matching, not only a valid one: the same as hr.tl.align's, and optimal (scipy's exact solver).
    a1, b1 = hr.tl.align(a0, b0, use_rep="spatial", progress=False, copy=True)
    np.testing.assert_array_equal(perm_b, b1.uns["hiref"]["partner"])
    np.testing.assert_array_equal(perm_a, a1.uns["hiref"]["partner"])
    C = cdist(b0.obsm["spatial"], a0.obsm["spatial"], "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    assert C[np.arange(N_B), perm_b].mean() == pytest.approx(C[rows, cols].mean(), rel=1e-9)
    assert b.uns["hiref"]["cost"] == pytest.approx(C[rows, cols].mean(), rel=1e-6)


def test_align_combined_representation_and_options(inputs, tmp_path, capsys):
    _, a_in, b_in = inputs
    out_b = tmp_path / "deep" / "er" / "B.h5ad"
    args = ["align", str(a_in), str(b_in), "--out", str(tmp_path / "A.h5ad"), "--out-b", str(out_b)]
    args += ["--use-rep", "X=2", "--use-rep", "spatial", "--key-added", "run1", "--cost", "euclidean"]
    args += ["--seed", "3", "--quiet"]
    assert main(args) == 0
    assert "use_rep {" in capsys.readouterr().out
    a, b = ad.read_h5ad(tmp_path / "A.h5ad"), ad.read_h5ad(out_b)
    params = a.uns["run1"]["params"]
    assert json.loads(params["use_rep"]) == {"X": 2.0, "spatial": 1.0}
    assert params["cost"] == "euclidean"
    assert params["random_state"] == 3
    assert "run1_match" in b.obs
    assert "hiref" not in a.uns
    # The options reached the alignment: the same matching as hr.tl.align with them.
    _, b1 = hr.tl.align(ad.read_h5ad(a_in), ad.read_h5ad(b_in), use_rep={"X": 2.0, "spatial": 1.0}, cost="euclidean",
                        random_state=3, progress=False, copy=True)  # fmt: skip
    np.testing.assert_array_equal(b.uns["run1"]["partner"], b1.uns["hiref"]["partner"])


def test_align_cost_euclidean_is_the_exact_euclidean_matching(inputs, tmp_path):
    _, a_in, b_in = inputs
    out = tmp_path / "A.h5ad"
    args = ["align", str(a_in), str(b_in), "--out", str(out), "--use-rep", "spatial", "--cost", "euclidean", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    b = ad.read_h5ad(out.with_name("A_b.h5ad"))
    E = cdist(b.obsm["spatial"], ad.read_h5ad(a_in).obsm["spatial"], "euclidean")
    rows, cols = linear_sum_assignment(E)
    best = E[rows, cols].mean()
    got = E[np.arange(b.n_obs), b.uns["hiref"]["partner"]].mean()
    assert got == pytest.approx(best, rel=1e-9)
    # The squared-Euclidean optimum is measurably worse here, so the check above tells the costs apart.
    rows, cols = linear_sum_assignment(E**2)
    assert E[rows, cols].mean() > best * 1.002


def test_use_rep_syntax():
    from hiref.cli import _rep, _use_rep

    assert _use_rep(None) == "auto"  # the API default
    assert _use_rep([_rep("spatial")]) == "spatial"
    assert _use_rep([_rep("spatial=0.5")]) == {"spatial": 0.5}
    assert _use_rep([_rep("X_pca=2"), _rep("spatial")]) == {"X_pca": 2.0, "spatial": 1.0}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--use-rep", "spatial=0"], "weight of 'spatial' must be a positive number"),
        (["--use-rep", "spatial=abc"], "weight of 'spatial' must be a positive number"),
        (["--use-rep", "=1"], "expected KEY or KEY=WEIGHT"),
        (["--cost", "cosine"], "invalid choice"),
        (["--unbalanced", "drop"], "invalid choice"),
        (["--n-pcs", "0"], "must be a positive integer"),
        (["--seed", "x"], "invalid int value"),
    ],
)
def test_align_bad_option_values(inputs, tmp_path, capsys, extra, message):
    _, a_in, b_in = inputs
    with pytest.raises(SystemExit) as info:
        main(["align", str(a_in), str(b_in), "--out", str(tmp_path / "o.h5ad"), *extra])
    assert info.value.code == EXIT_ERROR
    assert message in _one_line_error(capsys.readouterr().err, "align")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_input", "input file not found: {missing}"),
        ("missing_key", "has no .obsm['nope'] (available: ['spatial'])"),
        ("missing_spatial_key", "argument --spatial-key: {a} has no .obsm['coords']"),
        ("duplicate_rep", "'spatial' given more than once"),
        ("out_is_input", "output {a} is an input file"),
        ("out_b_is_input", "output {b} is an input file"),
        ("same_outputs", "two outputs go to the same file"),
        ("unreadable", "cannot read {junk} as .h5ad"),
        ("folder_is_file", "is not a writable folder"),
        ("bad_device", "argument --device"),
        ("empty_key", "argument --key-added: must not be empty"),
    ],
)
def test_align_errors(inputs, tmp_path, capsys, case, message):
    folder, a_in, b_in = inputs
    before = _digest(folder)
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not an h5ad file")
    out = str(tmp_path / "o.h5ad")
    args = {
        "missing_input": [str(a_in), str(tmp_path / "missing.h5ad"), "--out", out],
        "missing_key": [str(a_in), str(b_in), "--out", out, "--use-rep", "nope"],
        "missing_spatial_key": [str(a_in), str(b_in), "--out", out, "--use-rep", "spatial", "--spatial-key", "coords"],
        "duplicate_rep": [str(a_in), str(b_in), "--out", out, "--use-rep", "spatial", "--use-rep", "spatial=2"],
        "out_is_input": [str(a_in), str(b_in), "--out", str(a_in), "--overwrite"],
        "out_b_is_input": [str(a_in), str(b_in), "--out", out, "--out-b", str(b_in), "--overwrite"],
        "same_outputs": [str(a_in), str(b_in), "--out", out, "--out-b", out],
        "unreadable": [str(a_in), str(junk), "--out", out],
        "folder_is_file": [str(a_in), str(b_in), "--out", str(junk / "o.h5ad")],
        "bad_device": [str(a_in), str(b_in), "--out", out, "--device", "nonsense"],
        "empty_key": [str(a_in), str(b_in), "--out", out, "--key-added", ""],
    }[case]
    assert main(["align", *args, "--quiet"]) == EXIT_ERROR
    captured = capsys.readouterr()
    line = _one_line_error(captured.err, "align")
    assert message.format(missing=tmp_path / "missing.h5ad", a=a_in, b=b_in, junk=junk) in line
    assert captured.out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["junk.h5ad"]  # nothing written
    assert _digest(folder) == before


def test_align_existing_output_needs_overwrite(inputs, tmp_path, capsys):
    _, a_in, b_in = inputs
    out = tmp_path / "o.h5ad"
    out.write_text("keep me")
    args = ["align", str(a_in), str(b_in), "--out", str(out), "--use-rep", "spatial", "--quiet"]
    assert main(args) == EXIT_ERROR
    line = _one_line_error(capsys.readouterr().err, "align")
    assert f"output file exists: {out} (pass --overwrite" in line
    assert out.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["o.h5ad"]
    assert main([*args, "--overwrite"]) == 0
    assert ad.read_h5ad(out).uns["hiref"]["n_matched"] == N_B
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5ad", "o_b.h5ad"]


@pytest.mark.parametrize(
    ("error", "status", "existing"),
    [
        (KeyboardInterrupt, EXIT_INTERRUPTED, False),
        (OSError("No space left on device"), EXIT_ERROR, False),
        (KeyboardInterrupt, EXIT_INTERRUPTED, True),
    ],
)
def test_interrupted_write_leaves_no_output(inputs, tmp_path, monkeypatch, capsys, error, status, existing):
    """The first output is written in full, the second breaks off halfway: neither may appear or change."""
    _, a_in, b_in = inputs
    original = ad.AnnData.write_h5ad
    calls = []

    def flaky(self, filename, **kwargs):
        calls.append(filename)
        if len(calls) == 1:
            return original(self, filename, **kwargs)
        filename.write_bytes(b"\x89HDF\r\n\x1a\n half a file")
        raise error

    monkeypatch.setattr(ad.AnnData, "write_h5ad", flaky)
    old = tmp_path / "old.h5ad"
    old.write_text("previous result")
    # Either new outputs in folders that do not exist yet, or existing outputs replaced with --overwrite.
    out = old if existing else tmp_path / "new" / "sub" / "a.h5ad"
    args = ["align", str(a_in), str(b_in), "--out", str(out), "--use-rep", "spatial", "--quiet", "--overwrite"]
    assert main(args) == status
    assert len(calls) == 2
    assert all(c.parent == out.parent for c in calls)  # temporaries live next to the outputs
    assert [p.name for p in tmp_path.iterdir()] == ["old.h5ad"]  # no output, temp file or new folder
    assert old.read_text() == "previous result"
    err = capsys.readouterr().err
    if status == EXIT_INTERRUPTED:
        assert err.strip().splitlines() == ["hiref align: interrupted"]
    else:
        assert "No space left on device" in _one_line_error(err, "align")


# --------------------------------------------------------------------------------------- transfer


def test_transfer_predicts_target_cells(aligned, tmp_path, capsys):
    _, _, out_a, out_b, _ = aligned
    pred_path = tmp_path / "pred" / "pred.h5ad"
    args = ["transfer", str(out_a), str(out_b), "--out", str(pred_path), "--genes", "gene3", "gene7", "--obs", "region"]
    assert main(args) == 0
    assert str(pred_path) in capsys.readouterr().out
    assert [p.name for p in pred_path.parent.iterdir()] == ["pred.h5ad"]
    source, target, pred = ad.read_h5ad(out_a), ad.read_h5ad(out_b), ad.read_h5ad(pred_path)
    assert list(pred.obs_names) == list(target.obs_names)
    assert list(pred.var_names) == ["gene3", "gene7"]
    rows = source.obs_names.get_indexer(target.obs["hiref_match"].astype(str))
    assert (rows >= 0).all()
    expected = source[:, ["gene3", "gene7"]].X
    expected = expected.toarray() if sp.issparse(expected) else np.asarray(expected)
    got = pred.X.toarray() if sp.issparse(pred.X) else np.asarray(pred.X)
    np.testing.assert_array_equal(got, expected[rows])
    np.testing.assert_array_equal(pred.obs["region"].astype(str), source.obs["region"].astype(str).to_numpy()[rows])
    assert pred.obs["hiref_matched"].all()
    np.testing.assert_array_equal(pred.obsm["spatial"], target.obsm["spatial"])


def test_transfer_without_alignment(inputs, aligned, tmp_path, capsys):
    _, a_in, b_in = inputs
    _, _, out_a, out_b, _ = aligned
    out = tmp_path / "pred.h5ad"
    assert main(["transfer", str(a_in), str(b_in), "--out", str(out)]) == EXIT_ERROR
    line = _one_line_error(capsys.readouterr().err, "transfer")
    assert f"{a_in} has no alignment under key 'hiref'" in line
    assert f"hiref align {a_in} {b_in}" in line
    assert main(["transfer", str(out_a), str(out_b), "--out", str(out), "--key", "other"]) == EXIT_ERROR
    line = _one_line_error(capsys.readouterr().err, "transfer")
    assert "no alignment under key 'other'" in line
    assert "alignments found: hiref" in line
    assert not out.exists()


def test_transfer_errors(aligned, tmp_path, capsys):
    _, _, out_a, out_b, _ = aligned
    out = tmp_path / "pred.h5ad"
    assert main(["transfer", str(out_a), str(out_b), "--out", str(out), "--genes", "nope"]) == EXIT_ERROR
    line = _one_line_error(capsys.readouterr().err, "transfer")
    assert "['nope']" in line
    assert f"adata_source = {out_a}" in line
    assert main(["transfer", str(out_a), str(out_b), "--out", str(out_b), "--overwrite"]) == EXIT_ERROR
    assert "is an input file" in _one_line_error(capsys.readouterr().err, "transfer")
    assert not out.exists()


def test_help_lists_options_with_defaults(capsys):
    for command, expected in [
        ("align", ["--use-rep KEY[=WEIGHT]", "--out-b", "(default: sqeuclidean)", "(default: hiref)", "--overwrite"]),
        ("transfer", ["--genes GENE", "--obs COL", "(default: hiref)", "--overwrite"]),
    ]:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        for item in expected:
            assert item in text, (command, item)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "transfer" in capsys.readouterr().out


# ------------------------------------------------------------------------------- issue 18 (CLI)


@pytest.mark.parametrize("command", ["align", "demo"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range_names_the_option(inputs, tmp_path, capsys, command, seed):
    _, a_in, b_in = inputs
    files = [str(a_in), str(b_in)] if command == "align" else []
    with pytest.raises(SystemExit) as info:
        main([command, *files, "--out", str(tmp_path / "o.h5ad"), "--seed", seed])
    assert info.value.code == EXIT_ERROR
    line = _one_line_error(capsys.readouterr().err, command)
    assert f"argument --seed: must be an int from 0 to {2**32 - 1}, got {seed}" in line


def test_out_with_trailing_separator_is_refused(inputs, tmp_path, capsys):
    _, a_in, b_in = inputs
    out = f"{tmp_path / 'dirout'}/"
    assert main(["align", str(a_in), str(b_in), "--out", out, "--use-rep", "spatial", "--quiet"]) == EXIT_ERROR
    assert "ends with a path separator" in _one_line_error(capsys.readouterr().err, "align")
    assert list(tmp_path.iterdir()) == []


def test_transfer_explicit_spatial_key_must_exist(aligned, tmp_path, capsys):
    _, _, out_a, out_b, _ = aligned
    out = tmp_path / "pred.h5ad"
    assert main(["transfer", str(out_a), str(out_b), "--out", str(out), "--spatial-key", "nope"]) == EXIT_ERROR
    line = _one_line_error(capsys.readouterr().err, "transfer")
    assert f"argument --spatial-key: {out_b} has no .obsm['nope']" in line
    assert not out.exists()


@pytest.mark.parametrize("out", ["folder/", "figure.nope", "{tmp}"])
def test_demo_checks_out_before_computing(tmp_path, capsys, monkeypatch, out):
    import hiref._demo

    def never(*args, **kwargs):
        msg = "computed before checking --out"
        raise AssertionError(msg)

    monkeypatch.setattr(hiref._demo, "solve", never)
    assert main(["demo", "--n", "64", "--out", f"{tmp_path}/{out.format(tmp='')}", "--quiet"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "--out" in _one_line_error(captured.err, "demo") or "folder" in captured.err
    assert captured.out == ""


def test_demo_figure_has_ordinary_permissions(tmp_path):
    import os

    out = tmp_path / "demo.png"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", "--n", "64", "--no-exact", "--out", str(out), "--quiet"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


def test_sigterm_during_write_leaves_no_output(inputs, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from hiref.cli import EXIT_TERMINATED

    _, a_in, b_in = inputs
    original = ad.AnnData.write_h5ad
    calls = []

    def killed(self, filename, **kwargs):
        calls.append(filename)
        original(self, filename, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", killed)
    out = tmp_path / "new" / "sub" / "a.h5ad"
    before = signal.getsignal(signal.SIGTERM)
    assert (
        main(["align", str(a_in), str(b_in), "--out", str(out), "--use-rep", "spatial", "--quiet"]) == EXIT_TERMINATED
    )
    assert len(calls) == 1
    assert list(tmp_path.iterdir()) == []  # no output, temporary file or created folder
    assert capsys.readouterr().err.strip().splitlines() == ["hiref align: terminated"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_interrupt_while_starting_is_one_line(monkeypatch, capsys):
    import hiref.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(hiref.cli, "_parser", interrupted)
    assert main(["align", "a.h5ad", "b.h5ad", "--out", "o.h5ad"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines() == ["hiref: interrupted"]


def test_interrupt_while_importing_is_one_line(tmp_path):
    """Ctrl-C while the `hiref` command imports the package (torch) prints one line, exit status 130."""
    code = (
        "import sys, importlib.abc\n"
        "sys.argv[0] = '/usr/local/bin/hiref'\n"
        "class Interrupt(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'hiref.tl':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from hiref.cli import main\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == EXIT_INTERRUPTED
    assert result.stderr.strip().splitlines() == ["hiref: interrupted"]


def test_every_solver_option_has_a_flag_that_reaches_the_engine(inputs, tmp_path, monkeypatch):
    import dataclasses

    from hiref.engine import SolveOptions

    flags = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(SolveOptions) if f.metadata["cli"]}
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        main(["align", "--help"])
    missing = [flag for flag in flags.values() if flag not in help_text.getvalue()]
    assert not missing, f"flags missing from `hiref align --help`: {missing}"

    seen = {}
    real_solve = hr.tl._align.solve

    def spy(X, Y, options, **kwargs):
        seen.update({name: getattr(options, name) for name in options.names()})
        return real_solve(X, Y, options, **kwargs)

    monkeypatch.setattr(hr.tl._align, "solve", spy)
    _, a_in, b_in = inputs
    args = ["align", str(a_in), str(b_in), "--out", str(tmp_path / "A.h5ad"), "--use-rep", "spatial", "--quiet"]
    args += ["--leaf-size", "32", "--n-starts", "3", "--sketch-dim", "none", "--no-polish", "--schedule", "2", "2"]
    args += ["--schedule", "2", "2", "2", "2", "2"]
    assert main(args) == 0
    assert seen["leaf_size"] == 32
    assert seen["n_starts"] == 3
    assert seen["sketch_dim"] is None
    assert seen["polish"] is False
    assert list(seen["schedule"]) == [2, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("extra", "message", "by_argparse"),
    [
        (["--leaf-size", "0"], "argument --leaf-size: `--leaf-size` must be at least 1", False),
        (["--refine", "--refine-passes", "0"], "argument --refine-passes", False),
        (["--n-starts", "x"], "argument --n-starts: invalid int value: 'x'", True),
    ],
)
def test_solver_flag_errors_name_the_flag(inputs, tmp_path, capsys, extra, message, by_argparse):
    """Values argparse can check exit through SystemExit, the others return the status; both are 2."""
    _, a_in, b_in = inputs
    args = ["align", str(a_in), str(b_in), "--out", str(tmp_path / "o.h5ad"), "--quiet", *extra]
    if by_argparse:
        with pytest.raises(SystemExit) as info:
            main(args)
        status = info.value.code
    else:
        status = main(args)
    assert status == EXIT_ERROR
    assert message in _one_line_error(capsys.readouterr().err, "align")
    assert list(tmp_path.iterdir()) == []


class _Reached(Exception):
    """Raised by a spy in place of the engine, carrying the options it was given."""


# One value per solver flag that differs from the default, and the keyword it must become.
SOLVER_FLAGS = {
    "cost": (["--cost", "euclidean"], "euclidean"),
    "unbalanced": (["--unbalanced", "subsample"], "subsample"),
    "refine": (["--refine"], True),
    "polish": (["--no-polish"], False),
    "polish_neighbours": (["--polish-neighbours", "5"], 5),
    "schedule": (["--schedule", "2", "4", "2"], (2, 4, 2)),
    "max_rank": (["--max-rank", "4"], 4),
    "leaf_size": (["--leaf-size", "24"], 24),
    "n_iter": (["--n-iter", "7"], 7),
    "n_starts": (["--n-starts", "3"], 3),
    "coarse_size": (["--coarse-size", "100"], 100),
    "refine_passes": (["--refine-passes", "2"], 2),
    "refine_window": (["--refine-window", "50"], 50),
    "sketch_dim": (["--sketch-dim", "8"], 8),
    "dtype": (["--dtype", "float64"], "float64"),
}


def test_solver_flag_table_covers_every_flag():
    import dataclasses

    from hiref.engine import SolveOptions

    assert set(SOLVER_FLAGS) == {f.name for f in dataclasses.fields(SolveOptions) if f.metadata["cli"]}


@pytest.mark.parametrize("name", sorted(SOLVER_FLAGS))
def test_each_solver_flag_reaches_the_engine(inputs, tmp_path, monkeypatch, name):
    """Every flag arrives in the engine's options with its value, and changes nothing else."""
    from hiref.engine import SolveOptions

    def spy(X, Y, options, **kwargs):
        raise _Reached(options)

    monkeypatch.setattr(hr.tl._align, "solve", spy)
    _, a_in, b_in = inputs
    flag, value = SOLVER_FLAGS[name]
    args = ["align", str(a_in), str(b_in), "--out", str(tmp_path / "A.h5ad"), "--use-rep", "spatial", "--quiet", *flag]
    with pytest.raises(_Reached) as info:
        main(args)
    options = info.value.args[0]
    expected = SolveOptions(**{name: value})
    assert getattr(options, name) == getattr(expected, name)
    assert getattr(options, name) != getattr(SolveOptions(), name)
    for other in SOLVER_FLAGS:
        if other != name:
            assert getattr(options, other) == getattr(SolveOptions(), other), other
    assert list(tmp_path.iterdir()) == []
