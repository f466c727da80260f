"""The attribution every filing reads (audit.filings_domain.attribute): mass flows up the genealogy in proportion
to what each transformation drew from each input. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from audit.filings_domain import Step, attribute, share

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def step(tid: str, inputs: dict[str, str], outputs: list[str], model: str | None = "mass_balance") -> Step:
    return Step(
        transformation_id=tid,
        kind="smelting",
        actor="smelter-1",
        actor_kind="smelter",
        occurred_at=T0,
        custody_model=model,
        inputs=tuple((lot, Decimal(kg)) for lot, kg in inputs.items()),
        outputs=tuple(outputs),
    )


def made_by(*steps: Step) -> dict[str, Step]:
    return {o: s for s in steps for o in s.outputs}


def test_a_smelting_shares_its_output_among_its_inputs_by_the_mass_drawn() -> None:
    g = made_by(step("t1", {"ore-a": "300", "ore-b": "100"}, ["metal"]))
    a = attribute(g, {"metal": Decimal("10")})
    assert a.lots["ore-a"].kg == pytest.approx(7.5)
    assert a.lots["ore-b"].kg == pytest.approx(2.5)
    assert a.steps["t1"].kg == pytest.approx(10)
    assert set(a.origins(g)) == {"ore-a", "ore-b"}


def test_a_chain_keeps_the_shares_of_each_step() -> None:
    g = made_by(
        step("smelt", {"ore-a": "300", "ore-b": "100"}, ["ingot"]),
        step("alloy", {"ingot": "1", "scrap": "1"}, ["solder"]),
    )
    a = attribute(g, {"solder": 4})
    assert a.lots["scrap"].kg == pytest.approx(2)
    assert a.lots["ore-a"].kg == pytest.approx(1.5)
    assert a.lots["ore-b"].kg == pytest.approx(0.5)
    assert share(a.lots["ore-a"].kg, 4) == 0.375


def test_paths_that_meet_again_are_counted_once_each_and_add_up() -> None:
    # ore feeds two smeltings; both ingots go into the one consumed alloy
    g = made_by(
        step("s1", {"ore": "50", "other": "50"}, ["ingot-1"]),
        step("s2", {"ore": "100"}, ["ingot-2"]),
        step("mix", {"ingot-1": "1", "ingot-2": "3"}, ["alloy"]),
    )
    a = attribute(g, {"alloy": 8})
    assert a.lots["ore"].kg == pytest.approx(2 * 0.5 + 6)
    assert a.lots["other"].kg == pytest.approx(1)
    assert sum(f.kg for f in a.origins(g).values()) == pytest.approx(8)


def test_only_identity_preserved_or_segregated_steps_keep_a_physical_claim() -> None:
    g = made_by(
        step("s1", {"fairmined-ore": "10"}, ["ingot"], model="segregated"),
        step("mix", {"ingot": "1", "other": "1"}, ["alloy"], model="mass_balance"),
    )
    a = attribute(g, {"alloy": 2, "ingot": 3})
    assert a.lots["fairmined-ore"].kg == pytest.approx(4)  # 1 through the alloy, 3 held as the ingot itself
    assert a.lots["fairmined-ore"].physical_kg == pytest.approx(3)  # the mass-balance mix loses the physical claim
    g2 = made_by(step("s1", {"ore": "10"}, ["ingot"], model=None))
    assert attribute(g2, {"ingot": 1}).lots["ore"].physical_kg == 0  # no model on record: no physical claim


def test_a_root_drawn_into_another_root_gets_both_flows() -> None:
    g = made_by(step("t", {"a": "1", "b": "1"}, ["c"]))
    a = attribute(g, {"a": 5, "c": 2})
    assert a.lots["a"].kg == pytest.approx(6)
    assert a.lots["b"].kg == pytest.approx(1)


def test_inputs_without_mass_pass_nothing_on_and_nothing_breaks() -> None:
    g = made_by(step("t", {"a": "0"}, ["c"]))
    a = attribute(g, {"c": 2})
    assert a.lots["a"].kg == 0
    assert attribute({}, {}).lots == {}
