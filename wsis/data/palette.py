"""The PASCAL VOC colour palette and indexed-PNG I/O (index 255 is void)."""
from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette() -> list:
    """The 256-entry VOC palette as a flat [r, g, b, ...] list (bit-interleaved label colours)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def write_indexed_png(path: Path, indices: np.ndarray) -> None:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path, optimize=False)


def read_indexed_png(path: Path) -> np.ndarray:
    """The palette indices of a VOC PNG (not its colours)."""
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                raise ValueError(f"{path}: expected a palette (mode P) PNG as VOC writes, got mode {image.mode}")
            return np.array(image)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read the mask: {e}") from e
