"""A mesh simulator on the real gossip code: devices, encounters, hostile peers, metrics."""

from fieldkit.testing.mesh.encounters import MODELS, EncounterModel
from fieldkit.testing.mesh.report import MeshResult, spread_plot
from fieldkit.testing.mesh.sim import MeshConfig, run_mesh

__all__ = ["MODELS", "EncounterModel", "MeshConfig", "MeshResult", "run_mesh", "spread_plot"]
