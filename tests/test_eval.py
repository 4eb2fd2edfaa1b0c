"""diffusion-core eval and diffusion_core.evaluation: FD and KID against independent implementations, precision /
recall on clouds of known overlap, exact 2-D distances, the sample-size ladder, and the command offline."""
from __future__ import annotations

import importlib
import importlib.util
import json
import socket

import numpy as np
import pytest
import torch

from diffusion_core.cli import main
from diffusion_core.errors import InvalidInput
from diffusion_core.evaluation import (EvalOptions, evaluate, extrapolate, format_table, frechet_distance, kid,
                                       mmd_rbf, precision_recall, wasserstein2)
from diffusion_core.evaluation.distances import pot_available
from diffusion_core.evaluation.features import build_digits_mlp, digits_mlp
from diffusion_core.train.data import digits
from support import torch_fidelity_modules

NOISE_LEVELS = (0.1, 0.2, 0.3, 0.5, 0.8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature-network cache for the module (the network is trained once, in its first test)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFUSION_CORE_CACHE", str(path))
        yield path


def _clouds(n=400, d=12, seed=0):
    """Two Gaussian clouds with different means and (correlated) covariances."""
    g = np.random.default_rng(seed)
    a = g.standard_normal((n, d)) @ g.standard_normal((d, d)) * 0.5
    b = g.standard_normal((n + 37, d)) @ g.standard_normal((d, d)) * 0.4 + 0.3
    return a, b


class _Identity(torch.nn.Module):
    """torchmetrics' "feature network" that returns the features it is given."""

    def __init__(self, d):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def _torchmetrics_image(name: str):
    """``torchmetrics.image.<name>``, or a skip. torchmetrics imports torch-fidelity's Inception module when
    torch-fidelity is installed (the README's command installs it, without torchvision, for test_inception.py);
    these tests give torchmetrics their own feature module and need none of it, but the import must not fail."""
    if importlib.util.find_spec("torchmetrics") is None:
        pytest.skip("torchmetrics is not installed (the [test] extra)")
    with torch_fidelity_modules():
        return importlib.import_module(f"torchmetrics.image.{name}")


def _fd_scipy(a, b):
    """The Fréchet distance as pytorch-fid writes it: scipy's matrix square root of the covariances' product."""
    from scipy import linalg

    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_agrees_with_scipy_and_torchmetrics():
    a, b = _clouds()
    ours = frechet_distance(a, b)
    assert abs(ours - _fd_scipy(a, b)) <= 1e-6 * ours
    tm = _torchmetrics_image("fid")
    fid = tm.FrechetInceptionDistance(feature=_Identity(a.shape[1]))
    fid.update(torch.from_numpy(a), real=True)
    fid.update(torch.from_numpy(b), real=False)
    assert abs(ours - float(fid.compute())) <= 1e-6 * ours


def test_frechet_distance_with_fewer_rows_than_features_agrees_with_scipy():
    """Below d rows the distance comes from the rows' singular values (as for Inception's 2048 features at
    N <= 2000); it equals pytorch-fid's formula, for sets of equal and of different sizes."""
    g = np.random.default_rng(5)
    mix = g.standard_normal((40, 64))
    a = g.standard_normal((30, 40)) @ mix
    for b in (g.standard_normal((30, 40)) @ mix * 0.7 + 0.2, g.standard_normal((45, 40)) @ mix + 0.1):
        ours, theirs = frechet_distance(a, b), _fd_scipy(a, b)
        assert abs(ours - theirs) <= 1e-6 * theirs
    assert abs(frechet_distance(a, a)) <= 1e-6 * np.trace(np.cov(a, rowvar=False))


def _mmd2_by_pairs(x, y):
    """KID's unbiased MMD² written out over the pairs: (x_i.x_j / d + 1)^3 averaged over i != j in each set, minus
    twice the cross mean."""
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_agrees_with_the_pairwise_formula_and_torchmetrics():
    a, b = _clouds(n=60, d=5)
    b = b[:60]
    ours = kid(a, b)  # one subset: all rows
    assert ours.subsets == 1 and ours.subset_size == 60
    assert abs(ours.mean - _mmd2_by_pairs(a, b)) <= 1e-6 * abs(ours.mean)
    tm = _torchmetrics_image("kid")
    metric = tm.KernelInceptionDistance(feature=_Identity(a.shape[1]), subsets=1, subset_size=60)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    assert abs(ours.mean - float(metric.compute()[0])) <= 1e-6 * abs(ours.mean)


def test_kid_is_unbiased_and_its_subsets_are_reproducible():
    """Equal distributions: the mean of 400 KIDs of 30 vs 30 points is 0 within 4 standard errors (the biased
    V-statistic, diagonals included, sits far above 0: that is the bias the estimator removes)."""
    g = np.random.default_rng(1)
    kids, biased = [], []
    for _ in range(400):
        x, y = g.standard_normal((30, 4)), g.standard_normal((30, 4))
        kids.append(kid(x, y).mean)
        k = lambda u, v: (u @ v.T / 4 + 1) ** 3  # noqa: E731
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    kids = np.asarray(kids)
    assert abs(kids.mean()) < 4 * kids.std() / np.sqrt(len(kids))
    assert np.mean(biased) > 10 * kids.std() / np.sqrt(len(kids))
    x, y = g.standard_normal((200, 4)), g.standard_normal((200, 4)) + 0.5
    r1, r2 = kid(x, y, subsets=50, subset_size=100, seed=3), kid(x, y, subsets=50, subset_size=100, seed=3)
    assert r1 == r2 and r1.std > 0 and r1.std_error == pytest.approx(r1.std / np.sqrt(50))


def _modes(centres, n, g):
    return np.concatenate([c + g.standard_normal((n, 2)) for c in np.asarray(centres, dtype=np.float64)])


SHARED = [(0, 0), (30, 0), (0, 30)]


def test_precision_recall_recover_a_known_overlap():
    """Real: four unit Gaussians 30 apart; fake: three of them and one elsewhere. The modes are further apart than
    any 3-NN radius, so no ball reaches another mode: precision = (3/4) c and recall = (3/4) c, c the fraction of
    fresh points of a mode that its own balls cover, measured on a control pair drawn from one distribution."""
    g = np.random.default_rng(0)
    real = _modes(SHARED + [(30, 30)], 1000, g)
    fake = _modes(SHARED + [(60, 60)], 1000, g)
    control = precision_recall(_modes(SHARED + [(30, 30)], 1000, g), real)
    c = (control.precision + control.recall) / 2
    assert 0.95 < c <= 1.0
    r = precision_recall(fake, real, k=3)
    tol = 4 * np.sqrt(0.75 * 0.25 / 4000) + 4 * np.sqrt(c * (1 - c) / 4000)  # binomial errors of r and of c
    assert r.precision == pytest.approx(0.75 * c, abs=tol) and r.recall == pytest.approx(0.75 * c, abs=tol)
    copies = precision_recall(np.concatenate([real[:3000], fake[3000:]]), real)  # shared points are ball centres
    assert copies.precision == 0.75 and copies.recall == 0.75


def test_precision_recall_are_one_for_a_set_against_itself():
    x = np.random.default_rng(2).standard_normal((300, 3))
    r = precision_recall(x, x, k=5)
    assert (r.precision, r.recall, r.k) == (1.0, 1.0, 5)


def test_mmd_rbf_agrees_with_the_pairwise_formula():
    g = np.random.default_rng(4)
    x, y = g.standard_normal((25, 2)), g.standard_normal((31, 2)) + 0.2
    k = lambda u, v: np.exp(-((u - v) ** 2).sum() / (2 * 0.5 ** 2))  # noqa: E731
    xx = np.mean([k(x[i], x[j]) for i in range(25) for j in range(25) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(31) for j in range(31) if i != j])
    xy = np.mean([k(u, v) for u in x for v in y])
    assert mmd_rbf(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


@pytest.mark.skipif(not pot_available(), reason="POT is not installed (pip install pot, or the [eval] extra)")
def test_w2_of_a_translated_set_is_the_translation():
    """W2(mu, mu shifted by t) = |t| exactly for empirical measures too: any coupling's cost is |t|^2 plus a
    non-negative term (the means' difference is t), and the shift itself attains it."""
    x = np.random.default_rng(5).standard_normal((300, 2))
    assert wasserstein2(x, x + np.array([0.3, -0.4])) == pytest.approx(0.5, rel=1e-9)


def test_extrapolation_to_infinite_n():
    """A line in 1/N comes back exactly. FD between N(0, I) and N(0.3, 1.5 I) in 8-D is 8 (0.09 + 2.5 - 2 sqrt(1.5))
    in closed form; FD at N is biased up by about c/N. Over 200 repeats the mean FD at N=800 misses it by more
    than 5 standard errors, the mean extrapolation (100..800) is within 4 (extrapolating is linear, so its mean is
    the extrapolation of the mean FD curve)."""
    ns = [100, 200, 400, 800]
    assert extrapolate(ns, [2.0 + 50.0 / n for n in ns]) == pytest.approx(2.0, abs=1e-10)
    assert extrapolate([100], [3.0]) is None
    true = 8 * (0.09 + 2.5 - 2 * np.sqrt(1.5))
    g = np.random.default_rng(0)
    at_max, extrapolated = [], []
    for _ in range(200):
        x, y = g.standard_normal((800, 8)), g.standard_normal((800, 8)) * np.sqrt(1.5) + 0.3
        fds = [frechet_distance(x[:n], y[:n]) for n in ns]
        at_max.append(fds[-1])
        extrapolated.append(extrapolate(ns, fds))
    se = lambda v: np.std(v) / np.sqrt(len(v))  # noqa: E731
    assert np.mean(at_max) - true > 5 * se(at_max)
    assert abs(np.mean(extrapolated) - true) < 4 * se(extrapolated)


def test_digits_feature_network_is_deterministic_accurate_and_cached(cache, monkeypatch):
    net1, acc1 = build_digits_mlp()
    net2, acc2 = build_digits_mlp()
    assert acc1 == acc2 and acc1 > 0.95
    assert all(torch.equal(p, q) for p, q in zip(net1.state_dict().values(), net2.state_dict().values()))
    first = digits_mlp()
    assert (cache / "digits-mlp-v1.safetensors").is_file()
    monkeypatch.setattr("diffusion_core.evaluation.features.build_digits_mlp", lambda: pytest.fail("retrained"))
    x = digits().numpy()[:50]
    assert np.array_equal(digits_mlp().embed(x), first.embed(x))


def _noisy_digits(tmp_path, sigma):
    x = digits().numpy()
    noisy = np.clip(x + sigma * np.random.default_rng(11).standard_normal(x.shape), -1, 1).astype(np.float32)
    path = tmp_path / f"noise-{sigma}.npy"
    np.save(path, noisy)
    return path


def test_eval_orders_five_noise_levels_and_reports_its_floor(cache, tmp_path, capsys):
    reports = []
    for sigma in NOISE_LEVELS:
        out = tmp_path / f"{sigma}.json"
        rc = main(["eval", str(_noisy_digits(tmp_path, sigma)), "--reference", "digits", "--sizes", "200,898",
                   "--kid-subsets", "30", "--json", str(out)])
        assert rc == 0
        reports.append(json.loads(out.read_text()))
    table = capsys.readouterr().out
    assert "digits-mlp" in table and "N=898" in table and "floor" in table
    for name in ("FD", "KID"):
        for i in range(2):  # at N=200 and at N=898
            per_level = [next(m for m in r["metrics"] if m["name"] == name)["at_n"][i] for r in reports]
            values = [a["value"] for a in per_level]
            assert values == sorted(values) and len(set(values)) == 5, (name, values)
            assert len({a["floor"] for a in per_level}) == 1  # one floor: held-out real digits vs the reference
            assert per_level[0]["floor"] < values[0]
    assert all(r["feature_network"] == "digits-mlp" and r["num_floor"] + r["num_reference"] == 1797 for r in reports)


def test_a_folder_of_pngs_reads_as_the_same_images_in_a_npy(cache, tmp_path):
    """400 digits as 8-bit greyscale PNGs, and the same 8-bit values in a .npy (v / 127.5 - 1): one report."""
    from PIL import Image

    pixels = np.round((digits().numpy()[:400, 0] + 1) * 127.5).astype(np.uint8)
    (tmp_path / "pngs").mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image, "L").save(tmp_path / "pngs" / f"{i:03d}.png")
    np.save(tmp_path / "same.npy", pixels[:, None].astype(np.float64) / 127.5 - 1)
    options = EvalOptions(sizes=(100, 400), kid_subsets=10)
    from_folder = evaluate(str(tmp_path / "pngs"), "digits", options)
    from_npy = evaluate(str(tmp_path / "same.npy"), "digits", options)
    assert from_folder.num_samples == 400 and from_folder.feature_network == "digits-mlp"
    assert from_folder.metrics == from_npy.metrics


def test_eval_runs_with_the_network_blocked(tmp_path, monkeypatch, capsys):
    """No socket may connect while eval runs: the feature network is built from the bundled digits (a fresh
    cache), the 2-D reference drawn from its definition."""
    def refuse(*args, **kwargs):
        raise OSError("network access during eval")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("DIFFUSION_CORE_CACHE", str(tmp_path / "fresh-cache"))
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))
    assert main(["eval", str(_noisy_digits(tmp_path, 0.2)), "--reference", "digits", "--sizes", "100,400",
                 "--kid-subsets", "10"]) == 0
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(0).standard_normal((300, 2)).astype(np.float32))
    assert main(["eval", str(points), "--reference", "two-moons", "--kid-subsets", "10"]) == 0
    out = capsys.readouterr().out
    assert "FD" in out and "SW1" in out and "MMD2" in out and ("W2" in out) == pot_available()


def test_without_pot_w2_is_skipped_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr("diffusion_core.evaluation.measure.pot_available", lambda: False)
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(0).standard_normal((200, 2)))
    report = evaluate(str(points), "swiss-roll", EvalOptions(kid_subsets=5))
    assert [m.name for m in report.metrics] == ["FD", "KID", "precision", "recall", "SW1", "MMD2"]
    assert report.skipped == ["W2: POT is not installed (pip install pot, or the [eval] extra)"]
    assert "skipped W2: POT is not installed" in format_table(report)


def test_errors_are_one_line_and_name_the_argument(cache, tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.zeros((50, 3), dtype=np.float32))
    np.save(tmp_path / "few.npy", np.zeros((10, 1, 8, 8), dtype=np.float32))
    good = str(_noisy_digits(tmp_path, 0.1))
    cases = [([str(tmp_path / "missing.npy"), "--reference", "digits"], "SAMPLES .* does not exist"),
             ([str(tmp_path / "flat.npy"), "--reference", "digits"], r"SAMPLES .* has shape \(50, 3\); expected"),
             ([good, "--reference", "swiss-roll"], "must match"),
             ([good, "--reference", "no-such-set"], "--reference 'no-such-set' is neither a built-in dataset"),
             ([str(tmp_path / "few.npy"), "--reference", "digits", "--sizes", "3,10"], "--k 3 needs more than 3"),
             ([good, "--reference", "digits", "--sizes", "50,100", "--kid-subset-size", "80"],
              "--kid-subset-size must be between 2 and the smallest N"),
             ([good, "--reference", "digits", "--sizes", "5000"], "--sizes must be at most 898"),
             ([good, "--reference", "digits", "--kid-subsets", "0"], "--kid-subsets must be a positive int")]
    for args, message in cases:
        assert main(["eval", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("diffusion-core eval: error: "), err
        assert __import__("re").search(message, err), err
    with pytest.raises(InvalidInput, match="k=3 need more than 3 rows"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
    with pytest.raises(InvalidInput, match="subset_size must be at most"):
        kid(np.zeros((10, 2)), np.zeros((20, 2)), subset_size=11)
    np.save(tmp_path / "points.npy", np.zeros((50, 2), dtype=np.float32))
    with pytest.raises(InvalidInput, match="--features digits-mlp is for 8x8"):
        evaluate(str(tmp_path / "points.npy"), "swiss-roll", EvalOptions(features="digits-mlp"))


def test_frechet_distance_of_one_feature_is_the_1d_closed_form_and_needs_two_rows():
    """One feature: (m_a - m_b)^2 + (s_a - s_b)^2 with the sample moments (divisor N - 1); one row is refused."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 2.0, (40, 1)), rng.normal(-0.2, 0.7, (25, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert abs(frechet_distance(a, b) - expected) <= 1e-12 * expected
    with pytest.raises(InvalidInput, match="at least 2 rows each"):
        frechet_distance(a[:1], b)
