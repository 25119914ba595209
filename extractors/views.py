"""How frames become a backbone's input, by name, and the crop counts; this module imports nothing, so the command
line lists them without torch (:mod:`extractors.transforms` applies them):

- ``crop``: resize, then ``--crops`` crops (1 centre, 5 corners + centre, 10 with their mirrors), the published
  pipelines';
- ``full``: the whole frame, aspect kept, short side = the crop size (fully convolutional backbones);
- ``squash``: the whole frame resized to a square (fixed-size inputs: CLIP's ViT, the lightning student's frames).

And the grid choices (``--grid``, :mod:`extractors.grid` applies them): ``native`` keeps the backbone's last feature
map as cells, ``RxC`` pools it to R rows x C columns.
"""

import re

VIEWS = ("crop", "full", "squash")
CROP_COUNTS = (1, 5, 10)  # crops per snippet in the crop view: centre; four corners + centre; those + their mirrors
DEFAULT_VIEW = "crop"
GRID_NATIVE = "native"
_POOLED_GRID = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")


def check_grid(choice: str) -> str:
    """``choice`` in canonical form (``native`` or ``RxC``); ValueError naming the accepted forms."""
    text = str(choice).strip().lower()
    if text == GRID_NATIVE or _POOLED_GRID.match(text):
        return text
    raise ValueError(f"a grid is {GRID_NATIVE!r} (the backbone's own feature map) or ROWSxCOLS, two whole numbers "
                     f"from 1 such as '4x6' (rows x columns), got {choice!r}")
