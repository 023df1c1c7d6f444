"""The app's backend: plain functions over the shared model cache, one module per job.

numpy arrays, dataclasses and plain values in and out (no gradio). Errors a user can cause are
``ValueError`` with one sentence to act on. Nothing here keeps per-user state: loaded models,
latent maps and per-checkpoint statistics are read-only caches shared by every request.

- ``store``: the model cache; ``data``: the bundled digits and a visitor's own;
  ``codec``: batched encode/decode/-ELBO; ``stats``: per-checkpoint statistics;
- ``explore``: reconstruct, interpolate, traverse; ``sampling``: prior samples and their reading;
- ``maps``: latent maps, decoding a place on them, a digit's q(z|x) on them; ``catalog``: which models there are;
- ``scores``: per-digit figures to colour a map by; ``selection``: selections and attribute vectors.
"""

from .browser import decode_codes
from .catalog import VISITOR_MARK, broken_checkpoints, checkpoint_choices, checkpoint_info, model_health, yardsticks
from .data import MAP_SIZE, as_digit, bundled, bundled_digit, digit_input
from .explore import (
    Interpolation,
    Reconstruction,
    Traversal,
    dims_by_kl,
    interpolate,
    reconstruct,
    slerp,
    traverse,
)
from .maps import (
    METHODS,
    MIN_MAP_SIZE,
    DecodedPoint,
    LatentMap,
    PosteriorCloud,
    decode_at,
    full_map,
    latent_map,
    posterior_cloud,
    precompute_maps,
    prior_centres,
    project_point,
)
from .sampling import Reading, manifold_grid, read_digits, sample
from .scores import COLOUR_BY, check_colour, digit_scores, map_values
from .selection import (
    STRENGTHS,
    Attributed,
    AttributeVector,
    Selection,
    apply_attribute,
    attribute,
    attribute_from_codes,
    attribute_start,
    attribute_vector,
    check_indices,
    check_strengths,
    selection,
    selection_csv,
)
from .store import READERS, STORE, ModelStore

__all__ = [
    "MAP_SIZE",
    "METHODS",
    "MIN_MAP_SIZE",
    "READERS",
    "STORE",
    "VISITOR_MARK",
    "DecodedPoint",
    "Interpolation",
    "LatentMap",
    "ModelStore",
    "Reading",
    "Reconstruction",
    "Traversal",
    "as_digit",
    "broken_checkpoints",
    "bundled",
    "bundled_digit",
    "checkpoint_choices",
    "checkpoint_info",
    "decode_at",
    "decode_codes",
    "digit_input",
    "dims_by_kl",
    "full_map",
    "interpolate",
    "latent_map",
    "manifold_grid",
    "model_health",
    "yardsticks",
    "precompute_maps",
    "prior_centres",
    "project_point",
    "read_digits",
    "reconstruct",
    "sample",
    "slerp",
    "traverse",
    "COLOUR_BY",
    "STRENGTHS",
    "AttributeVector",
    "Attributed",
    "PosteriorCloud",
    "Selection",
    "apply_attribute",
    "attribute_start",
    "attribute",
    "attribute_from_codes",
    "attribute_vector",
    "check_colour",
    "check_indices",
    "check_strengths",
    "digit_scores",
    "map_values",
    "posterior_cloud",
    "selection",
    "selection_csv",
]
