"""jaxla.datasets: embedded data for examples, tests and experiments — nothing is downloaded.

Small real data committed to the package or built on the machine from what every Python
installation ships (graphs, text), and synthetic generators with a known ground truth.
"""

from jaxla.datasets import _graphs, _images, _ratings, _text
from jaxla.datasets._graphs import *  # noqa: F403
from jaxla.datasets._images import *  # noqa: F403
from jaxla.datasets._ratings import *  # noqa: F403
from jaxla.datasets._text import *  # noqa: F403

__all__ = [*_graphs.__all__, *_images.__all__, *_ratings.__all__, *_text.__all__]
