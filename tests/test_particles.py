from __future__ import annotations

import pytest

from cryokit.particles import PARTICLE_NAMES, PARTICLES, SCORED_PARTICLE_NAMES, TOTAL_WEIGHT, particle


def test_catalog_matches_competition_table():
    expected = {  # COMPETITION.md 1.1: radius, weight; 2.3: label
        "apo-ferritin": (60, 1, 1),
        "beta-amylase": (65, 0, 2),
        "beta-galactosidase": (90, 2, 3),
        "ribosome": (150, 1, 4),
        "thyroglobulin": (130, 2, 5),
        "virus-like-particle": (135, 1, 6),
    }
    assert {p.name: (p.radius_angstrom, p.weight, p.label) for p in PARTICLES} == expected
    assert TOTAL_WEIGHT == 7
    assert "beta-amylase" not in SCORED_PARTICLE_NAMES and len(SCORED_PARTICLE_NAMES) == 5
    assert particle("thyroglobulin").match_radius_angstrom == 65.0


def test_copick_objects_carry_host_fields():
    vlp = particle("virus-like-particle").copick_object()
    assert vlp["label"] == 6 and vlp["radius"] == 135 and "pdb_id" not in vlp
    assert particle("ribosome").copick_object()["pdb_id"] == "6EK0"
    assert [p.label for p in PARTICLES] == list(range(1, 7))
    assert len(set(PARTICLE_NAMES)) == 6


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown particle type 'ferritin'.*apo-ferritin"):
        particle("ferritin")
