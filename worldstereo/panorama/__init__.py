"""Panorama input: equirect conventions, the 27-view perspective bank (the WorldStereo release's
pano_bank layout), the panoramic cache and trajectories from the bank's middle views.

Modules: equirect (conventions, pixel ↔ ray), sampling (prefiltered resampling), bank (layout,
cameras.json), views (equirect ↔ views), cache (panoramic points), planner (trajectories),
load (input files), synthetic_room (analytic ray-cast room with exact depth).
"""

from worldstereo.panorama.bank import (MIDDLE_VIEWS, RELEASE_LAYOUT, BankLayout, bank_cameras, read_bank_cameras,
                                       to_release_camera_json, write_bank_cameras)
from worldstereo.panorama.cache import points_from_panorama
from worldstereo.panorama.load import PanoramaInput, load_panorama_view
from worldstereo.panorama.planner import PanoPlannerConfig, pivot_depths_from_distance, plan_panorama
from worldstereo.panorama.views import PanoView, make_bank, read_pano_bank, views_to_equirect, write_pano_bank

__all__ = [
    "MIDDLE_VIEWS", "RELEASE_LAYOUT", "BankLayout", "bank_cameras", "read_bank_cameras", "write_bank_cameras",
    "to_release_camera_json", "points_from_panorama", "PanoramaInput", "load_panorama_view",
    "PanoPlannerConfig", "pivot_depths_from_distance", "plan_panorama", "PanoView", "make_bank",
    "views_to_equirect", "read_pano_bank", "write_pano_bank",
]
