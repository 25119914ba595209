"""How frames become a backbone's input, by name, and the crop counts; this module imports nothing, so the command
line lists them without torch (:mod:`extractors.transforms` applies them):

- ``crop``: resize, then ``--crops`` crops (1 centre, 5 corners + centre, 10 with their mirrors), the published
  pipelines';
- ``full``: the whole frame, aspect kept, short side = the crop size (fully convolutional backbones);
- ``squash``: the whole frame resized to a square (fixed-size inputs: CLIP's ViT, the lightning student's frames).
"""

VIEWS = ("crop", "full", "squash")
CROP_COUNTS = (1, 5, 10)  # crops per snippet in the crop view: centre; four corners + centre; those + their mirrors
DEFAULT_VIEW = "crop"
