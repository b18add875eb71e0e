"""Augmentations and the fixed perturbations of the robustness benchmark."""
import numpy as np

from ssen_ros.config import AugmentConfig
from ssen_ros.data.augment import augment, density_keep, grey_colors, shift_colors
from ssen_ros.data.dataset import Scene
from ssen_ros.data.perturb import Perturbation


def _scene(n=2000):
    rng = np.random.default_rng(0)
    return Scene("synth1_00", rng.uniform(0, 4, (n, 3)).astype(np.float32),
                 rng.integers(0, 256, (n, 3)).astype(np.uint8), rng.integers(0, 20, n), rng.integers(-1, 5, n))


def test_colour_shift_is_gamma_then_gain_in_colour_space():
    features = np.array([[-0.5, 0.0, 0.5]], np.float32)  # colours 0, 0.5, 1
    out = shift_colors(features, 2.0, np.array([1.0, 1.0, 0.5]))
    np.testing.assert_allclose(out + 0.5, [[0.0, 0.25, 0.5]], atol=1e-6)
    np.testing.assert_allclose(shift_colors(features, 1.0, np.array([2.0, 2.0, 2.0])) + 0.5, [[0, 1, 1]])


def test_grey_is_luma_in_every_channel():
    out = grey_colors(np.array([[0.5, -0.5, -0.5]], np.float32))  # pure red
    np.testing.assert_allclose(out[0], out[0, 0])
    np.testing.assert_allclose(out[0, 0] + 0.5, 0.299, atol=1e-6)


def test_density_keep_draws_a_share_between_the_bounds():
    rng = np.random.default_rng(1)
    shares = [len(density_keep(10000, rng, 0.1)) / 10000 for _ in range(200)]
    assert 0.09 < min(shares) < 0.2 and 0.8 < max(shares) <= 1.0
    assert density_keep(10, rng, 1.0) == slice(None)


def test_colour_drop_and_grey_follow_their_probabilities():
    rng = np.random.default_rng(2)
    points, features = _scene().points, np.random.default_rng(3).uniform(-0.5, 0.5, (2000, 3)).astype(np.float32)
    config = AugmentConfig(color_jitter_std=0.0, color_drop=0.3, color_grey=0.3)
    kinds = []
    for _ in range(300):
        _, out = augment(points, features, rng, config)
        kinds.append("none" if not out.any() else "grey" if np.allclose(out[:, 0], out[:, 1]) else "colour")
    counts = {k: kinds.count(k) / 300 for k in ("none", "grey", "colour")}
    assert abs(counts["none"] - 0.3) < 0.1 and abs(counts["grey"] - 0.3) < 0.1 and abs(counts["colour"] - 0.4) < 0.1


def test_perturbations_change_what_they_name_and_repeat():
    scene = _scene()
    none = Perturbation(colors="none")(scene)
    assert none.colors is None and np.array_equal(none.points, scene.points)
    thin = Perturbation(keep_fraction=0.3)(scene)
    assert 500 < len(thin.points) < 700 and len(thin.semantic) == len(thin.instance) == len(thin.points)
    np.testing.assert_array_equal(Perturbation(keep_fraction=0.3)(scene).points, thin.points)
    far = Perturbation(offset=(72.0, 96.0, 0.5))(scene)
    np.testing.assert_allclose(far.points - scene.points, np.tile([72.0, 96.0, 0.5], (len(scene.points), 1)), atol=1e-4)
    tilted = Perturbation(tilt_deg=3.0)(scene)
    assert np.allclose(tilted.points[:, 0], scene.points[:, 0]) and not np.allclose(tilted.points[:, 2], scene.points[:, 2])
    shifted = Perturbation(colors="shift")(scene)
    assert shifted.colors.dtype == np.uint8 and not np.array_equal(shifted.colors, scene.colors)
