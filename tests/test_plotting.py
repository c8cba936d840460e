"""Image tiling for the figures (lib.plotting): grey and colour images, tick positions at the tiles' centres."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib import plotting  # noqa: E402


def test_grey_and_colour_images_tile_with_white_gaps():
    grey = torch.full((3, 1, 4, 4), -1.0)  # black in [-1, 1]
    canvas = plotting.tile_images(grey, ncols=2)
    assert canvas.shape == (9, 9) and canvas[:4, :4].max() == 0.0 and canvas[4, :].min() == 1.0
    colour = torch.zeros(2, 3, 4, 4)
    colour[:, 0] = 1.0  # red
    rgb = plotting.tile_images(colour, ncols=2)
    assert rgb.shape == (4, 9, 3)
    assert np.allclose(rgb[0, 0], [1.0, 0.5, 0.5]) and np.allclose(rgb[0, 4], 1.0)  # the gap is white


def test_tile_centres_are_where_the_tiles_are():
    assert plotting.tile_centres(3, 32) == [16.0, 49.0, 82.0]
    canvas = plotting.tile_images(torch.full((3, 1, 6, 6), -1.0), ncols=3)
    assert all(canvas[3, int(c)] == 0.0 for c in plotting.tile_centres(3, 6))


def test_signed_maps_draw_grey_and_colour():
    fig, axes = plt.subplots(1, 2)
    plotting.show_signed_image(axes[0], torch.randn(1, 5, 5))
    plotting.show_signed_image(axes[1], torch.randn(3 * 5 * 5).reshape(3, 5, 5))
    assert axes[0].images[0].get_array().shape == (5, 5)
    rgb = axes[1].images[0].get_array()
    assert rgb.shape == (5, 5, 3) and float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    plt.close(fig)
