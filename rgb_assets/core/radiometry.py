"""Surface reflectance: what is physically plausible (the engine applies ``DN * scale + offset``
per time slice inside its median, see ``core.compositing``)."""

from __future__ import annotations

# Surface reflectance outside this range is physically implausible (a missing or doubled
# offset shows up here first); bright snow and specular glint can pass 1.0 slightly.
PLAUSIBLE_REFLECTANCE = (-0.05, 1.6)
