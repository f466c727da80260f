"""What the projection writes and reads, as SQL on the consumer's asyncpg connection: a batch's rows with one
statement per table (COPY for big batches), the flags, the in-memory state loaded from the tables, and the look for
shipments overdue in transit. Plain SQL prepared once per connection: the projection is a hot path.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from audit import corrections_domain, rules
from audit.corrections_domain import Correction
from audit.projection.decode import intern, intern_opt
from audit.projection.flags import Cleared
from audit.projection.state import Bag, DeclaredLot, MineLot, OriginAnswer, OriginLots, Smelting, State, Transit
from audit.rules import Area, Declaration, Finding, Thresholds
from shared.sql import Statement

# --- the batch's writes: one statement per table --------------------------------------------------------------

LOT_COLUMNS = (
    "lot_id",
    "mineral",
    "form",
    "mass_kg",
    "origin_kind",
    "origin_participant",
    "origin_country",
    "origin_region",
    "origin_mining_type",
    "custodian",
    "origin_event",
    "origin_at",
    "recorded_at",
    "last_custody_at",
    "tag",
    "seal",
    "produced_by",
    "origin_source",
)
SHIPMENT_COLUMNS = (
    "shipment_id",
    "lot_id",
    "sender",
    "receiver",
    "mass_kg",
    "seal",
    "shipped_at",
    "max_transit_days",
    "transit_countries",
    "status",
    "event_id",
    "recorded_at",
    "transit_regions",
)
TRANSFORMATION_COLUMNS = (
    "transformation_id",
    "kind",
    "actor",
    "actor_kind",
    "occurred_at",
    "outputs",
    "event_id",
    "recorded_at",
    "custody_model",
)
TRANSFORMATION_LOT_COLUMNS = ("transformation_id", "lot_id", "position")  # transformation_outputs
TRANSFORMATION_INPUT_COLUMNS = (*TRANSFORMATION_LOT_COLUMNS, "mass_kg")  # and the mass drawn
PRODUCT_COLUMNS = ("product_id", "owner", "name", "gtin", "description", "registered_at", "event_id")
CONSUMPTION_COLUMNS = (
    "consumption_id",
    "lot_id",
    "actor",
    "product_id",
    "product",
    "mass_kg",
    "consumed_at",
    "event_id",
)
RECEIVED_COLUMNS = ("event_id", "source", "type", "subject", "key", "time", "data", "topic", "partition", "offset")
INSERT_RECEIVED_SQL = """
INSERT INTO received_events (event_id, source, type, subject, key, time, data, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::json[],
                     $8::text[], $9::int[], $10::bigint[])
RETURNING seq
"""
# COPY takes two round trips where an INSERT takes one: it pays off for big batches (a backlog, a replay), while a
# live trickle of a few events a batch is written with INSERTs, which keeps a write's flag a few milliseconds sooner.
COPY_FROM_EVENTS = 64
UPSERT_PARTICIPANTS_SQL = """
INSERT INTO participants (id, kind, name, country, region, mining_type, annual_capacity_kg, version, disclosure,
                          rmi_smelter_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
                     $8::bigint[], $9::text[], $10::text[])
ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, country = EXCLUDED.country,
    region = EXCLUDED.region, mining_type = EXCLUDED.mining_type, annual_capacity_kg = EXCLUDED.annual_capacity_kg,
    version = EXCLUDED.version, disclosure = EXCLUDED.disclosure, rmi_smelter_id = EXCLUDED.rmi_smelter_id
WHERE participants.version <= EXCLUDED.version
"""
INSERT_CERTIFICATIONS_SQL = """
INSERT INTO certifications (id, participant_id, scheme, value, valid_from, valid_until, known_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::date[], $7::timestamptz[])
ON CONFLICT (id) DO NOTHING
"""
UPSERT_CAHRA_SQL = """
INSERT INTO cahra_areas (id, country, region, effective_from, effective_to, source, known_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::text[], $7::timestamptz[])
ON CONFLICT (id) DO UPDATE SET effective_from = EXCLUDED.effective_from, effective_to = EXCLUDED.effective_to,
    source = EXCLUDED.source
"""
UPSERT_RISK_PROFILES_SQL = """
INSERT INTO risk_profiles (id, country, region, factor, level, effective_from, effective_to, source, known_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], $7::date[], $8::text[],
                     $9::timestamptz[])
ON CONFLICT (id) DO UPDATE SET level = EXCLUDED.level, effective_from = EXCLUDED.effective_from,
    effective_to = EXCLUDED.effective_to, source = EXCLUDED.source
"""
# ASM on or next to industrial titles and coexistence agreements (H5): the latest version the registry published
UPSERT_ASM_PRESENCE_SQL = """
INSERT INTO asm_presence (id, titleholder, asm_group, relation, since, until, source, version, known_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::date[], $7::text[],
                     $8::bigint[], $9::timestamptz[])
ON CONFLICT (id) DO UPDATE SET asm_group = EXCLUDED.asm_group, relation = EXCLUDED.relation, since = EXCLUDED.since,
    until = EXCLUDED.until, source = EXCLUDED.source, version = EXCLUDED.version
WHERE asm_presence.version <= EXCLUDED.version
"""
UPSERT_AGREEMENTS_SQL = """
INSERT INTO coexistence_agreements (id, titleholder, asm_groups, status, signed, valid_from, valid_until, reference,
                                    version, known_at)
SELECT u.id, u.titleholder, ARRAY(SELECT jsonb_array_elements_text(u.groups)), u.status, u.signed, u.valid_from,
       u.valid_until, u.reference, u.version, u.known_at
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::date[], $6::date[], $7::date[], $8::text[],
            $9::bigint[], $10::timestamptz[])
     AS u(id, titleholder, groups, status, signed, valid_from, valid_until, reference, version, known_at)
ON CONFLICT (id) DO UPDATE SET asm_groups = EXCLUDED.asm_groups, status = EXCLUDED.status, signed = EXCLUDED.signed,
    valid_from = EXCLUDED.valid_from, valid_until = EXCLUDED.valid_until, reference = EXCLUDED.reference,
    version = EXCLUDED.version
WHERE coexistence_agreements.version <= EXCLUDED.version
"""
# Companies' self-assessments (issue 25): never changed, so a replayed or redelivered one keeps the row there
INSERT_SELF_ASSESSMENTS_SQL = """
INSERT INTO self_assessments (assessment_id, participant_id, submitted_at, questionnaire_version, scores, total,
                              cmrt_answers, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[], $6::numeric[], $7::jsonb[],
                     $8::text[])
ON CONFLICT (assessment_id) DO NOTHING
"""
INSERT_LOTS_SQL = """
INSERT INTO lots (lot_id, mineral, form, mass_kg, origin_kind, origin_participant, origin_country, origin_region,
                  origin_mining_type, custodian, origin_event, origin_at, recorded_at, last_custody_at, tag, seal,
                  produced_by, origin_source)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                     $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::text[])
ON CONFLICT (lot_id) DO NOTHING
"""
UPDATE_LOTS_SQL = """
UPDATE lots SET custodian = u.custodian, last_custody_at = greatest(lots.last_custody_at, u.at)
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(lot_id, custodian, at)
WHERE lots.lot_id = u.lot_id
"""
INSERT_HOLDERS_SQL = """
INSERT INTO lot_holders (lot_id, participant_id) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING
"""
# A receipt: the receiver holds the lot (again) from now, `until` null; the sender held it until the receipt (its
# event's time). After INSERT_HOLDERS_SQL: a lot a batch registers and hands over is written with its hand-off.
HAND_OVER_SQL = """
INSERT INTO lot_holders (lot_id, participant_id, until) SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
ON CONFLICT (lot_id, participant_id) DO UPDATE SET until = EXCLUDED.until
"""
INSERT_SHIPMENTS_SQL = """
INSERT INTO shipments (shipment_id, lot_id, sender, receiver, mass_kg, seal, shipped_at, max_transit_days,
                       transit_countries, status, event_id, recorded_at, transit_regions)
SELECT s.shipment_id, s.lot_id, s.sender, s.receiver, s.mass_kg, s.seal, s.shipped_at, s.max_transit_days,
       ARRAY(SELECT v FROM jsonb_array_elements_text(s.countries) WITH ORDINALITY AS x(v, i) ORDER BY i), s.status,
       s.event_id, s.recorded_at,
       ARRAY(SELECT v FROM jsonb_array_elements_text(s.regions) WITH ORDINALITY AS x(v, i) ORDER BY i)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::timestamptz[],
            $8::int[], $9::jsonb[], $10::text[], $11::text[], $12::timestamptz[], $13::jsonb[])
     WITH ORDINALITY AS s(shipment_id, lot_id, sender, receiver, mass_kg, seal, shipped_at, max_transit_days,
                          countries, status, event_id, recorded_at, regions, n)
ORDER BY s.n
ON CONFLICT DO NOTHING
"""
# A declared origin (`declared`: the declarant, the certifications it named, the mine's name) and the named mine's
# latest answer (`answer`). An upsert, not an UPDATE of `lots`: one statement cannot update the row a sibling CTE
# inserts (the live path writes a batch as one statement). A declaration written (again, by a replay) comes with the
# answers of its batch, and none else: the answers' events set them again.
DECLARED_LOTS_SQL = """
INSERT INTO declared_origins (lot_id, declared, answer)
SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[])
ON CONFLICT (lot_id) DO UPDATE SET declared = coalesce(EXCLUDED.declared, declared_origins.declared),
    answer = CASE WHEN EXCLUDED.declared IS NOT NULL THEN EXCLUDED.answer
                  ELSE coalesce(EXCLUDED.answer, declared_origins.answer) END
"""
RECEIVE_SHIPMENTS_SQL = "UPDATE shipments SET status = 'received' WHERE shipment_id = ANY($1::text[])"
INSERT_TRANSFORMATIONS_SQL = """
INSERT INTO transformations (transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, recorded_at,
                             custody_model)
SELECT t.transformation_id, t.kind, t.actor, t.actor_kind, t.occurred_at,
       ARRAY(SELECT v FROM jsonb_array_elements_text(t.outputs) WITH ORDINALITY AS x(v, i) ORDER BY i), t.event_id,
       t.recorded_at, t.custody_model
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], $7::text[],
            $8::timestamptz[], $9::text[])
     WITH ORDINALITY AS t(transformation_id, kind, actor, actor_kind, occurred_at, outputs, event_id, recorded_at,
                          custody_model, n)
ORDER BY t.n
ON CONFLICT DO NOTHING
"""
INSERT_TRANSFORMATION_INPUTS_SQL = """
INSERT INTO transformation_inputs (transformation_id, lot_id, position, mass_kg)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::numeric[]) ON CONFLICT DO NOTHING
"""
INSERT_TRANSFORMATION_OUTPUTS_SQL = """
INSERT INTO transformation_outputs (transformation_id, lot_id, position)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) ON CONFLICT DO NOTHING
"""
# Products (custody.product.registered / .updated): the latest name, GTIN and description; owner and registration
# stay as first recorded.
UPSERT_PRODUCTS_SQL = """
INSERT INTO products (product_id, owner, name, gtin, description, registered_at, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, gtin = EXCLUDED.gtin,
    description = EXCLUDED.description, event_id = EXCLUDED.event_id
"""
INSERT_CONSUMPTIONS_SQL = """
INSERT INTO consumptions (consumption_id, lot_id, actor, product_id, product, mass_kg, consumed_at, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::timestamptz[],
                     $8::text[])
ON CONFLICT DO NOTHING
"""
INSERT_FLAGS_SQL = """
INSERT INTO flags (id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, raised_at)
SELECT f.id, f.rule, f.cause, f.severity, f.lot_id,
       ARRAY(SELECT v FROM jsonb_array_elements_text(f.lot_ids) WITH ORDINALITY AS x(v, i) ORDER BY i),
       ARRAY(SELECT v FROM jsonb_array_elements_text(f.participants) WITH ORDINALITY AS x(v, i) ORDER BY i),
       f.summary, f.evidence, f.raised_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[],
            $9::jsonb[], $10::timestamptz[])
     WITH ORDINALITY AS f(id, rule, cause, severity, lot_id, lot_ids, participants, summary, evidence, raised_at, n)
ORDER BY f.n
ON CONFLICT (rule, cause) DO NOTHING
RETURNING id
"""
# A re-judgement (reference data arrived, `screening.rejudged`), as CTEs of one statement (`rejudge_parts`): the flags
# whose evidence or severity differs (REJUDGED_SQL, read before the statement: a flag inserted by the same statement
# is not seen, and needs no update, since it is inserted with its latest finding) get the new evidence, summary and
# severity (a finding may set its own); a person's decision, the status, stays. A flag the rule no longer holds for
# (`cleared`: `flags.Cleared`) keeps its evidence and severity with `cleared_by` (the fact) added, once, and is
# withdrawn, unless a person decided on it (a resolution, any decision row): then its status stays and it shows
# evidence changed since the decision. A withdrawn flag the rule
# holds for again is opened again (by the system: no decision row). Each time the evidence replaced goes to
# flag_evidence_history, keyed by the audit.flag.updated event that says so (the flag as it now is, what it said and
# its status before, the fact that cleared it, whether a person had decided). The flags are locked as they are read:
# a decision on one (which locks it too, `repository.get_flag`) waits for this statement, then sees the flag as it
# leaves it (withdrawn: a participant is refused).
REJUDGED_SQL = """
SELECT f.id, f.rule, f.cause, coalesce(u.severity, f.severity) AS severity, f.severity AS previous_severity,
       f.lot_id, f.lot_ids, f.participants, f.raised_at,
       f.status AS previous_status, f.evidence AS previous_evidence, f.summary AS previous_summary,
       CASE WHEN u.cleared THEN f.evidence || jsonb_build_object('cleared_by', u.evidence)
            WHEN f.evidence ? 'correction' AND NOT u.evidence ? 'correction'  -- a custody correction's mark stays
            THEN u.evidence || jsonb_build_object('correction', f.evidence -> 'correction')
            ELSE u.evidence END
           AS evidence,
       CASE WHEN u.cleared THEN f.summary || ' [no longer holds: ' || u.summary || ']'
            WHEN f.evidence ? 'correction' AND NOT u.evidence ? 'correction'
            THEN u.summary || ' [grounds corrected by the party (' || (f.evidence -> 'correction' ->> 'reason')
                 || '); review]'
            ELSE u.summary END
           AS summary,
       CASE WHEN u.cleared AND NOT d.decided THEN 'withdrawn'
            WHEN NOT u.cleared AND f.status = 'withdrawn' THEN 'open'
            ELSE f.status END AS status,
       CASE WHEN u.cleared THEN u.evidence END AS cleared_by,
       u.event_id, d.decided
FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::text[], $5::bool[], $6::text[])
     AS u(id, evidence, summary, event_id, cleared, severity)
JOIN flags f ON f.id = u.id
CROSS JOIN LATERAL (
  SELECT f.status NOT IN ('open', 'withdrawn') OR EXISTS (SELECT 1 FROM flag_decisions x WHERE x.flag_id = f.id)
         AS decided
) d
WHERE CASE WHEN u.cleared THEN NOT (f.evidence ? 'cleared_by')
           ELSE f.evidence - 'correction' IS DISTINCT FROM u.evidence - 'correction'
                OR f.severity IS DISTINCT FROM u.severity
                OR f.status = 'withdrawn' END
FOR UPDATE OF f
"""
REJUDGE_FLAGS_SQL = """
UPDATE flags f SET evidence = r.evidence, summary = r.summary, status = r.status, severity = r.severity
FROM rejudged r WHERE f.id = r.id
"""
INSERT_EVIDENCE_HISTORY_SQL = """
INSERT INTO flag_evidence_history (id, flag_id, evidence, summary, replaced_at)
SELECT r.event_id, r.id, r.previous_evidence, r.previous_summary, $1::timestamptz FROM rejudged r
ON CONFLICT DO NOTHING
"""
INSERT_FLAG_UPDATED_EVENTS_SQL = """
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data)
SELECT r.event_id, $2::text, r.lot_id, 'audit.flag.updated', $3::text, r.id, $1::timestamptz, $4::text,
       jsonb_build_object(
           'id', r.id, 'rule', r.rule, 'cause', r.cause, 'severity', r.severity, 'lot_id', r.lot_id,
           'lot_ids', to_jsonb(r.lot_ids), 'participants', to_jsonb(r.participants), 'summary', r.summary,
           'evidence', r.evidence, 'status', r.status, 'raised_at', to_jsonb(r.raised_at),
           'previous_summary', r.previous_summary, 'previous_evidence', r.previous_evidence,
           'previous_status', r.previous_status, 'previous_severity', r.previous_severity,
           'cleared_by', r.cleared_by,
           'updated_at', to_jsonb($1::timestamptz), 'evidence_changed_since_decision', r.decided)
FROM rejudged r
"""
# In the one-statement path (`stage_batch`): the audit.flag.raised events of the flags the CTE `new_flags` inserted.
INSERT_FLAG_EVENTS_SQL = """
INSERT INTO outbox (event_id, topic, key, type, source, subject, time, dataschema, data, traceparent)
SELECT o.event_id, o.topic, o.key, o.type, o.source, o.subject, o.time, o.dataschema, o.data, o.traceparent
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[],
            $9::jsonb[], $10::text[], $11::text[])
     WITH ORDINALITY AS o(event_id, topic, key, type, source, subject, time, dataschema, data, traceparent, flag_id, n)
WHERE o.flag_id IN (SELECT id FROM new_flags)
ORDER BY o.n
"""


# --- a batch's rows ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Changes:
    """The rows one batch (or one event, when applied alone) writes, in the order the statements run."""

    received: list[tuple[Any, ...]] = field(default_factory=list)
    participants: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    certs: list[tuple[Any, ...]] = field(default_factory=list)
    asm_presence: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # H5: UPSERT_ASM_PRESENCE_SQL's rows
    agreements: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # H5: UPSERT_AGREEMENTS_SQL's (groups JSON)
    areas: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    risk_profiles: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # risk profiles (H4), by id
    self_assessments: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # INSERT_SELF_ASSESSMENTS_SQL's rows
    lots: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # new lots (custodian, last_custody_at last)
    lot_updates: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # existing lots: custodian, at
    holders: dict[tuple[str, str], None] = field(default_factory=dict)
    # receipts: (lot, participant) -> until (None: the receiver, who holds it now; a time: the sender let go then)
    hand_overs: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    # declared lots (`declared_origins`): lot -> (declaration JSON or None: kept, the mine's answer JSON or None)
    declared: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    shipments: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # new shipments (status 10th)
    received_shipments: dict[str, None] = field(default_factory=dict)  # existing shipments now received
    transformations: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # a transformation's lots, stored once (n + m rows): (transformation, lot) -> position in its list
    transformation_inputs: dict[tuple[str, str], tuple[int, Decimal | None]] = field(default_factory=dict)  # +mass
    transformation_outputs: dict[tuple[str, str], int] = field(default_factory=dict)
    products: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # PRODUCT_COLUMNS, by product (the latest)
    consumptions: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # CONSUMPTION_COLUMNS, by consumption
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)  # the first finding per (rule, cause)
    traces: dict[tuple[str, str], str] = field(default_factory=dict)  # a finding's event's trace context, if traced
    # re-judgements (reference data arrived): the latest per (rule, cause); each replaces its flag's evidence if it
    # differs, or withdraws a flag the rule no longer holds for (`Cleared`) (`rejudge_flags`)
    rejudged: dict[tuple[str, str], Finding | Cleared] = field(default_factory=dict)
    corrections: dict[str, Correction] = field(default_factory=dict)  # custody corrections (`corrections_projection`)


Part = tuple[str, str, Any, Any]


def parts(c: Changes, copy: bool) -> list[Part]:
    """The pending changes, one statement per table, in the order they are written: ("copy", table, records,
    columns) for rows that go in with COPY, ("sql", name, statement, arguments) for the others. With `copy`, the
    rows the state knows to be new (lots, shipments, transformations and their lots) and the events go in
    with COPY, half the cost of an INSERT; should one exist after all, the batch is refused and applied again one
    event at a time with `copy=False`, whose statements keep what is there (ON CONFLICT DO NOTHING), as the state
    assumed. The flags are written after these (`insert_flags`)."""
    out: list[Part] = []
    if c.received and copy:  # the events themselves, the bulk of a batch's bytes
        out.append(("copy", "received_events", c.received, RECEIVED_COLUMNS))
    elif c.received:
        out.append(("sql", "received", INSERT_RECEIVED_SQL, columns(c.received, len(RECEIVED_COLUMNS))))
    if c.participants:
        out.append(("sql", "participants", UPSERT_PARTICIPANTS_SQL, columns(list(c.participants.values()), 10)))
    if c.certs:
        out.append(("sql", "certifications", INSERT_CERTIFICATIONS_SQL, columns(c.certs, 7)))
    if c.asm_presence:
        out.append(("sql", "asm_presence", UPSERT_ASM_PRESENCE_SQL, columns(list(c.asm_presence.values()), 9)))
    if c.agreements:
        out.append(("sql", "agreements", UPSERT_AGREEMENTS_SQL, columns(list(c.agreements.values()), 10)))
    if c.areas:
        out.append(("sql", "areas", UPSERT_CAHRA_SQL, columns(list(c.areas.values()), 7)))
    if c.risk_profiles:
        out.append(("sql", "risk_profiles", UPSERT_RISK_PROFILES_SQL, columns(list(c.risk_profiles.values()), 9)))
    if c.self_assessments:
        rows = list(c.self_assessments.values())
        out.append(("sql", "self_assessments", INSERT_SELF_ASSESSMENTS_SQL, columns(rows, 8)))
    if c.lots and copy:
        out.append(("copy", "lots", list(c.lots.values()), LOT_COLUMNS))
    elif c.lots:
        out.append(("sql", "lots", INSERT_LOTS_SQL, columns(list(c.lots.values()), len(LOT_COLUMNS))))
    if c.lot_updates:
        updates = [
            list(c.lot_updates),
            [u[0] for u in c.lot_updates.values()],
            [u[1] for u in c.lot_updates.values()],
        ]
        out.append(("sql", "lot_updates", UPDATE_LOTS_SQL, updates))
    if c.holders:
        out.append(("sql", "holders", INSERT_HOLDERS_SQL, columns(list(c.holders), 2)))
    if c.hand_overs:
        rows = [(lot, who, until) for (lot, who), until in c.hand_overs.items()]
        out.append(("sql", "hand_overs", HAND_OVER_SQL, columns(rows, 3)))
    if c.declared:
        declared = [list(c.declared), [d[0] for d in c.declared.values()], [d[1] for d in c.declared.values()]]
        out.append(("sql", "declared", DECLARED_LOTS_SQL, declared))
    if c.shipments and copy:
        out.append(("copy", "shipments", list(c.shipments.values()), SHIPMENT_COLUMNS))
    elif c.shipments:
        rows = [(*r[:8], to_json(r[8]), *r[9:12], to_json(r[12]), *r[13:]) for r in c.shipments.values()]
        out.append(("sql", "shipments", INSERT_SHIPMENTS_SQL, columns(rows, len(SHIPMENT_COLUMNS))))
    if c.received_shipments:
        out.append(("sql", "received_shipments", RECEIVE_SHIPMENTS_SQL, [list(c.received_shipments)]))
    if c.transformations and copy:
        out.append(("copy", "transformations", list(c.transformations.values()), TRANSFORMATION_COLUMNS))
    elif c.transformations:
        rows = [(*r[:5], to_json(r[5]), *r[6:]) for r in c.transformations.values()]
        out.append(("sql", "transformations", INSERT_TRANSFORMATIONS_SQL, columns(rows, len(TRANSFORMATION_COLUMNS))))
    inputs = [(tid, lot_id, position, m) for (tid, lot_id), (position, m) in c.transformation_inputs.items()]
    outputs = [(tid, lot_id, position) for (tid, lot_id), position in c.transformation_outputs.items()]
    for table, sql, records, cols in (
        ("transformation_inputs", INSERT_TRANSFORMATION_INPUTS_SQL, inputs, TRANSFORMATION_INPUT_COLUMNS),
        ("transformation_outputs", INSERT_TRANSFORMATION_OUTPUTS_SQL, outputs, TRANSFORMATION_LOT_COLUMNS),
    ):
        if records and copy:
            out.append(("copy", table, records, cols))
        elif records:
            out.append(("sql", table, sql, columns(records, len(cols))))
    if c.products:
        out.append(("sql", "products", UPSERT_PRODUCTS_SQL, columns(list(c.products.values()), len(PRODUCT_COLUMNS))))
    if c.consumptions:
        rows = list(c.consumptions.values())
        out.append(("sql", "consumptions", INSERT_CONSUMPTIONS_SQL, columns(rows, len(CONSUMPTION_COLUMNS))))
    return out


async def write_parts(conn: asyncpg.Connection, todo: Sequence[Part]) -> None:
    for how, name, what, args in todo:
        if how == "copy":
            await conn.copy_records_to_table(name, records=what, columns=args)
        else:
            await conn.execute(what, *args)


async def insert_flags(conn: asyncpg.Connection, args: Sequence[Any]) -> set[str]:
    """INSERT_FLAGS_SQL with these arguments (`flags.FlagBatch.args`): the ids of the flags it really inserted."""
    return {r["id"] for r in await conn.fetch(INSERT_FLAGS_SQL, *args)}


def rejudge_parts(st: Statement, args: Sequence[Any], at: datetime, events: tuple[str, str, str | None] | None) -> None:
    """A re-judgement's writes as CTEs of `st` (`rejudged` holds the flags it changed): `args` are
    `flags.rejudge_args`; `events` (topic, source, dataschema) also writes their audit.flag.updated events."""
    st.add("rejudged", REJUDGED_SQL, args)
    st.add("rejudged_flags", REJUDGE_FLAGS_SQL, [])
    st.add("rejudged_history", INSERT_EVIDENCE_HISTORY_SQL, [at])
    if events is not None:
        st.add("rejudged_events", INSERT_FLAG_UPDATED_EVENTS_SQL, [at, *events])


async def rejudge_flags(
    conn: asyncpg.Connection, args: Sequence[Any], at: datetime, events: tuple[str, str, str | None] | None
) -> list[str]:
    """`rejudge_parts` as a statement of its own: the ids of the flags whose evidence changed."""
    st = Statement()
    rejudge_parts(st, args, at, events)
    return [r["id"] for r in await conn.fetch(st.sql("SELECT id FROM rejudged"), *st.args)]


def add_declared(s: State, lot: DeclaredLot) -> None:
    """A declared lot into the state and its indexes (loading; `handlers.lots.on_external` does the same through
    the journal)."""
    s.declared_lots[lot.lot_id] = lot
    s.declared_by_country.setdefault(lot.declared.country, []).append(lot.lot_id)
    if lot.declared.mine is not None:
        s.declared_by_mine.setdefault(lot.declared.mine, []).append(lot.lot_id)


def declared_json(lot: DeclaredLot) -> str:
    """What `declared_origins.declared` keeps of a declaration beyond the lot's origin columns."""
    d = lot.declared
    return to_json({"declarant": d.declarant, "certifications": d.certifications, "mine_name": d.mine_name})


def answer_json(a: OriginAnswer) -> str:
    return to_json({"confirmed": a.confirmed, "note": a.note, "event_id": a.event_id, "by": a.by, "at": a.at})


def columns(rows: Sequence[tuple[Any, ...]], n: int) -> list[list[Any]]:
    """Rows to the column arrays `unnest` takes."""
    if not rows:
        return [[] for _ in range(n)]
    return [list(col) for col in zip(*rows, strict=True)]


def to_json(v: Any) -> str:
    return orjson.dumps(v).decode()


# --- reads ------------------------------------------------------------------------------------------------------


async def load_state(conn: asyncpg.Connection, thresholds: Thresholds) -> State:
    """The in-memory state, rebuilt from the tables (at start, and after a batch that did not commit)."""
    s = State()
    for r in await conn.fetch("SELECT id, version, annual_capacity_kg::text AS cap FROM participants"):
        s.capacities[r["id"]] = (r["version"], orjson.loads(r["cap"]) if r["cap"] else {})
    for r in await conn.fetch(
        "SELECT id, participant_id, scheme, value, valid_from, valid_until, known_at FROM certifications"
    ):
        s.cert_ids.add(r["id"])
        row = (r["known_at"], r["id"], r["scheme"], r["value"], r["valid_from"], r["valid_until"])
        bisect.insort(s.certs.setdefault(r["participant_id"], []), row)
    for r in await conn.fetch(
        "SELECT id, country, region, effective_from, effective_to, source, known_at FROM cahra_areas"
    ):
        area = Area(r["id"], r["country"], r["region"], r["effective_from"], r["effective_to"], r["source"])
        s.areas[r["id"]] = (r["known_at"], area)
        bisect.insort(s.areas_by_country.setdefault(r["country"], []), (r["known_at"], r["id"]))
    for r in await conn.fetch(
        "SELECT id, country, region, factor, level, effective_from, effective_to, source, known_at "
        "FROM risk_profiles ORDER BY known_at, id"
    ):
        profile = rules.RiskProfile(
            r["id"],
            r["country"],
            r["region"],
            r["factor"],
            r["level"],
            r["effective_from"],
            r["effective_to"],
            r["source"],
        )
        s.risk_profiles[r["id"]] = (r["known_at"], profile)
        s.risk_profiles_by_country.setdefault(r["country"], []).append(r["id"])
    for r in await conn.fetch("SELECT lot_id, last_custody_at FROM lots"):
        s.lots[r["lot_id"]] = r["last_custody_at"]
    for r in await conn.fetch(
        "SELECT lot_id, origin_event, origin_participant, origin_country, origin_region, origin_mining_type, "
        "origin_at, recorded_at, mineral, mass_kg, produced_by FROM lots WHERE origin_kind = 'mine'"
    ):
        lot = MineLot(
            r["lot_id"],
            r["origin_event"],
            intern(r["origin_participant"]),
            intern_opt(r["origin_country"]),
            intern_opt(r["origin_region"]),
            intern_opt(r["origin_mining_type"]),
            r["origin_at"],
            r["recorded_at"],
            intern_opt(r["produced_by"]),
        )
        s.mine_lots[lot.lot_id] = lot
        if lot.produced_by is not None:  # as `new_lot`
            s.lots_by_producer.setdefault(lot.produced_by, []).append(lot.lot_id)
        s.lots_by_mine.setdefault(lot.mine, []).append(lot.lot_id)
        s.lots_by_country.setdefault(lot.country or "", []).append(lot.lot_id)
        produced = (lot.origin_at, lot.recorded_at, lot.lot_id, r["mass_kg"])
        for year in rules.production_years(lot.origin_at, lot.recorded_at, thresholds):  # as `new_lot`
            key = (lot.mine, intern(r["mineral"]), year)
            bisect.insort(s.production.setdefault(key, []), produced)
            s.produced_kg[key] = s.produced_kg.get(key, Decimal(0)) + r["mass_kg"]
    await _load_coexistence(conn, s)
    for r in await conn.fetch("SELECT id, country, region, mining_type FROM participants WHERE kind = 'mine'"):
        s.mines[r["id"]] = (intern(r["country"]), intern_opt(r["region"]), intern_opt(r["mining_type"]))
    for r in await conn.fetch(
        "SELECT l.lot_id, l.origin_event, l.origin_participant, l.origin_country, l.origin_region, "
        "l.origin_mining_type, l.origin_at, l.recorded_at, d.declared::text AS declared, d.answer::text AS answer "
        "FROM declared_origins d JOIN lots l USING (lot_id) "
        "WHERE l.origin_kind = 'external' AND d.declared IS NOT NULL"
    ):
        known = orjson.loads(r["declared"])
        declared = Declaration(
            intern(known["declarant"]),
            intern(r["origin_country"]),
            intern_opt(r["origin_region"]),
            intern_opt(r["origin_mining_type"]),
            tuple((intern(c[0]), intern(c[1])) for c in known["certifications"]),
            intern_opt(r["origin_participant"]),
            known.get("mine_name"),
        )
        add_declared(s, DeclaredLot(r["lot_id"], r["origin_event"], declared, r["origin_at"], r["recorded_at"]))
        if r["answer"] is not None:
            a = orjson.loads(r["answer"])
            at = datetime.fromisoformat(a["at"])
            s.origin_answers[r["lot_id"]] = OriginAnswer(a["confirmed"], a["note"], a["event_id"], a["by"], at)
    for r in await conn.fetch(LOAD_BAGS_SQL):
        if not r["shipped"]:
            s.bags[r["lot_id"]] = Bag(r["tag"], r["seal"], False)
        elif r["tag"] is not None:
            s.shipped_tags[r["lot_id"]] = r["tag"]
    for r in await conn.fetch("SELECT cause FROM flags WHERE rule = 'capacity_exceeded'"):
        s.capacity_flagged.add(r["cause"])
    for r in await conn.fetch("SELECT shipment_id FROM shipments WHERE status = 'in_transit'"):
        s.open_shipments.add(r["shipment_id"])
    for r in await conn.fetch(
        "SELECT shipment_id, lot_id, event_id, transit_countries, shipped_at, sender, receiver, transit_regions "
        "FROM shipments WHERE cardinality(transit_countries) > 0 AND status <> 'voided'"
    ):
        t = Transit(
            r["lot_id"],
            r["event_id"],
            tuple(map(intern, r["transit_countries"])),
            r["shipped_at"],
            intern(r["sender"]),
            intern(r["receiver"]),
            tuple(map(intern, r["transit_regions"])),
        )
        s.transits[r["shipment_id"]] = t
        for c in dict.fromkeys(t.countries):
            s.transits_by_country.setdefault(c, []).append(r["shipment_id"])
    for r in await conn.fetch(
        LOAD_TRANSFORMATIONS_SQL, sorted(rules.SMELTER_KINDS), sorted(rules.SMELTING_KINDS), CUSTODY_SOURCE
    ):
        s.transformations.add(r["transformation_id"])
        input_forms = tuple(sorted(map(intern, r["input_forms"] or ())))
        output_forms = tuple(sorted(map(intern, r["output_forms"] or ())))
        if rules.smelts(r["kind"], r["actor_kind"], input_forms, output_forms):  # as `handlers.transformations`
            s.smeltings[r["transformation_id"]] = Smelting(
                r["event_id"],
                intern(r["actor"]),
                intern(r["actor_kind"]),
                r["occurred_at"],
                tuple(r["outputs"]),
                r["recorded_at"],
                intern(r["kind"]),
                input_forms,
                output_forms,
            )
            s.smeltings_by_actor.setdefault(r["actor"], []).append(r["transformation_id"])
    load_grievances(s, await conn.fetch(LOTS_BY_ORIGIN_SQL), await conn.fetch(SUBSTANTIATED_SQL))
    for r in await conn.fetch(LOAD_CORRECTIONS_SQL):
        corrections_domain.remember(s.corrected, s.corrected_shipments, Correction.of(r))
    return s


LOAD_CORRECTIONS_SQL = """
SELECT c.correction_id, c.lot_id, c.event_id, c.corrected_type, c.reason, c.note, c.declared_by, c.declared_at,
       c.effect, c.shipment_id, c.corrective_event_ids
FROM corrections c WHERE EXISTS (SELECT 1 FROM lots l WHERE l.lot_id = c.lot_id)
ORDER BY c.declared_at, c.correction_id
"""
"""The corrections the state starts from (`load_state`): those of lots the projection holds. A replay
empties the lots (not this table, whose rows it writes again as they were): it starts from none, as the stream
did."""


CUSTODY_SOURCE = "/custody"
# Every transformation, and for one whose actor's kind or own kind does not decide whether it is a smelting
# (`rules.smelting_basis`) the distinct forms of its inputs and outputs as its event carried them (the event that
# recorded it, kept in received_events): `rules.smelts` judges them as the live handler did.
LOAD_TRANSFORMATIONS_SQL = """
SELECT t.transformation_id, t.event_id, t.kind, t.actor, t.actor_kind, t.occurred_at, t.outputs, t.recorded_at,
       f.input_forms, f.output_forms
FROM transformations t
LEFT JOIN LATERAL (
  SELECT ARRAY(SELECT DISTINCT x->>'form' FROM json_array_elements(e.data->'inputs') x
               WHERE x->>'form' IS NOT NULL) AS input_forms,
         ARRAY(SELECT DISTINCT x->>'form' FROM json_array_elements(e.data->'outputs') x
               WHERE x->>'form' IS NOT NULL) AS output_forms
  FROM received_events e
  WHERE NOT (t.actor_kind = ANY($1::text[]) OR t.kind = ANY($2::text[]))
    AND e.source = $3 AND e.event_id = t.event_id
  LIMIT 1
) f ON true
"""

# H6: every lot by its origin participant (but a mine's origin lots: `State.lots_by_mine`), in no order (a lot's flag
# depends on the lot and the grievance only); and the substantiated grievances (`grievance_triages`, which a replay
# never empties; a replay into another database gets them from `audit.decisions` instead).
LOTS_BY_ORIGIN_SQL = (
    "SELECT origin_participant, origin_at, lot_id, origin_kind FROM lots "
    "WHERE origin_participant IS NOT NULL AND origin_kind <> 'mine'"
)
SUBSTANTIATED_SQL = (
    "SELECT grievance_id, participant_id, period_from, period_to, severity, note FROM grievance_triages "
    "WHERE decision = 'substantiated' ORDER BY seq"
)


def load_grievances(s: State, lots: Sequence[Any], triages: Sequence[Any]) -> None:
    """`State.lots_by_origin` and `State.grievances` from those two queries' rows."""
    by_origin = s.lots_by_origin
    for r in lots:
        who = intern(r["origin_participant"])
        index = by_origin.get(who)
        if index is None:
            index = by_origin[who] = OriginLots()
        index.days.append(r["origin_at"].astimezone(UTC).date().toordinal())
        index.lots.append(r["lot_id"])
        index.kinds.append(intern(r["origin_kind"]))
    for r in triages:
        g = rules.Grievance(
            r["grievance_id"],
            intern(r["participant_id"]),
            r["period_from"],
            r["period_to"],
            rules.Severity(r["severity"]),
            r["note"],
        )
        known = s.grievances.setdefault(g.participant_id, [])
        if all(k.id != g.id for k in known):
            known.append(g)


async def _load_coexistence(conn: asyncpg.Connection, s: State) -> None:
    """ASM on or next to industrial titles and coexistence agreements (H5), per titleholder in the order known."""
    for r in await conn.fetch(
        "SELECT id, titleholder, asm_group, relation, since, until, source, version FROM asm_presence "
        "ORDER BY known_at, id"
    ):
        p = rules.AsmPresence(
            r["id"],
            intern(r["titleholder"]),
            intern(r["asm_group"]),
            r["relation"],
            r["since"],
            r["until"],
            r["source"],
        )
        s.asm_presence[p.id] = (r["version"], p)
        s.asm_presence_by_titleholder.setdefault(p.titleholder, []).append(p.id)
    for r in await conn.fetch(
        "SELECT id, titleholder, asm_groups, status, signed, valid_from, valid_until, reference, version "
        "FROM coexistence_agreements ORDER BY known_at, id"
    ):
        a = rules.CoexistenceAgreement(
            r["id"],
            intern(r["titleholder"]),
            tuple(map(intern, r["asm_groups"])),
            r["status"],
            r["signed"],
            r["valid_from"],
            r["valid_until"],
            r["reference"],
        )
        s.agreements[a.id] = (r["version"], a)
        s.agreements_by_titleholder.setdefault(a.titleholder, []).append(a.id)


# The lots registered at a mine with a tag or a seal (`handlers.lots.on_registered`), shipped once they have a
# shipment (`handlers.shipments.on_shipped`).
LOAD_BAGS_SQL = """
SELECT l.lot_id, l.tag, l.seal, l.lot_id IN (SELECT s.lot_id FROM shipments s WHERE s.status <> 'voided') AS shipped
FROM lots l WHERE l.origin_kind = 'mine' AND (l.tag IS NOT NULL OR l.seal IS NOT NULL)
"""

OVERDUE_SQL = """
SELECT * FROM shipments WHERE status = 'in_transit'
  AND shipped_at + make_interval(days => coalesce(max_transit_days, $2)) < $1
  AND recorded_at < $1 - make_interval(secs => $3)
"""


async def overdue_shipments(
    conn: asyncpg.Connection, now: datetime, default_transit_days: int, grace_s: float
) -> list[asyncpg.Record]:
    """Shipments in transit past their allowed time at `now`, recorded at least `grace_s` ago."""
    return list(await conn.fetch(OVERDUE_SQL, now, default_transit_days, grace_s))
