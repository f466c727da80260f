"""A product lot's UNTP 0.6.1 Digital Product Passport (its `credentialSubject`, a `ProductPassport`), from the due
diligence audit holds for its battery passport (`audit.battery_passport.BatteryDueDiligenceOut`, built with the
same read rights and the same disclosure). Pure: no I/O.

- `product`: the lot (`urn:mcoc:lot:<id>`, its mineral, its mass as `dimensions.weight` in KGM);
- `materialsProvenance`: one `Material` per origin of each mineral upstream, not only the battery materials (name,
  `originCountry`, `massFraction` the share of the lot's mass attributed to it, `mass`, `recycledMassFraction` 1 for
  a recycled origin); the origin's region, mining type and lots ride as extension properties;
- `conformityClaim`: one `Claim` per third-party assurance on record on the day (RMAP, IRMA, Fairmined, CRAFT,
  ITSCI), `conformance` true (a certification not in force is not listed);
- `traceabilityInformation`: a link to the lot's Digital Traceability Events (custody's `/lots/{id}/untp/dte`), and
  as `verifiedRatio` the share of the lot's mass traced to a known origin;
- `dueDiligence` (extension): the smelters and refiners on the path with their RMAP status on the day, the risks
  (flags) the asker may see with their status, the asker's due-diligence policy score, the responsibly produced
  share (`audit.shares`, every mineral: by origin assessment and by the RMAP status of the smelters passed), and
  what is not claimed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from audit.battery_passport import BatteryDueDiligenceOut, RiskOut
from audit.shares import ResponsibleShareOut, ShareOut
from shared import epc

DTE_LINK_TYPE = "https://test.uncefact.org/vocabulary/linkTypes/dte"
TOPICS = {
    "rmap": "governance.compliance",
    "itsci": "governance.compliance",
    "irma": "social.rights",
    "fairmined": "social.rights",
    "craft": "social.rights",
}
SCHEME_NAMES = {
    "rmap": "RMI Responsible Minerals Assurance Process",
    "itsci": "ITSCI",
    "irma": "IRMA Standard for Responsible Mining",
    "fairmined": "Fairmined Standard",
    "craft": "CRAFT Code",
}


def _risk(r: RiskOut) -> dict[str, Any]:
    return {
        "flagId": r.flag_id,
        "rule": r.rule,
        "severity": r.severity,
        "status": r.status,
        "summary": r.summary,
        "raisedAt": r.raised_at.isoformat().replace("+00:00", "Z"),
        "lotIds": r.lot_ids,
        "handled": r.handled,
    }


def _share(x: ShareOut) -> dict[str, Any]:
    return {"category": x.category, "value": x.value, "massFraction": x.fraction, "claim": x.claim}


def passport(dd: BatteryDueDiligenceOut, shares: ResponsibleShareOut, *, custody_url: str) -> dict[str, Any]:
    """The ProductPassport of the lot `dd` (its battery passport's due diligence) and `shares` (its responsibly
    produced share) are about."""
    lot = dd.lot_id
    materials: list[dict[str, Any]] = []
    smelters: list[dict[str, Any]] = []
    risks: list[dict[str, Any]] = []
    for m in dd.supply_chain_due_diligence_report.raw_materials:
        for o in m.origins:
            material: dict[str, Any] = {
                "type": ["Material"],
                "name": m.label,
                "massFraction": min(max(o.share, 0.0), 1.0),
                "mass": {"value": o.mass_kg, "unit": epc.KILOGRAM},
                "recycledMassFraction": 1.0 if o.origin_kind == "recycled" else 0.0,
                "originKind": o.origin_kind,
                "originLots": o.lot_ids,
            }
            if o.country:
                material["originCountry"] = o.country
            for key, value in (("originRegion", o.region), ("miningType", o.mining_type), ("producer", o.name)):
                if value:
                    material[key] = value
            materials.append(material)
        for f in m.smelters_and_refiners:
            smelters.append(
                {
                    "material": m.label,
                    "name": f.name,
                    "kind": f.kind,
                    "rmiFacilityId": f.rmi_facility_id,
                    "country": f.country,
                    "rmapStatus": f.rmap_status_then,
                    "processedAt": f.processed_at.isoformat().replace("+00:00", "Z"),
                    "massFraction": f.share,
                }
            )
        risks += [_risk(r) for r in m.risks]
    risks += [_risk(r) for r in dd.supply_chain_due_diligence_report.other_risks]
    claims = []
    for i, a in enumerate(dd.third_party_assurances):
        claims.append(
            {
                "type": ["Claim", "Declaration"],
                "id": epc.record_uri("claim", f"{lot}/{i}"),
                "description": f"{SCHEME_NAMES.get(a.scheme, a.scheme)}: {a.value}, in force on {a.on.isoformat()} "
                f"({a.role.replace('_', ' ')})",
                "assessmentDate": a.on.isoformat(),
                "conformance": True,
                "conformityTopic": TOPICS.get(a.scheme, "governance.compliance"),
                "scheme": a.scheme,
                "validFrom": a.valid_from.isoformat(),
                **({"validUntil": a.valid_until.isoformat()} if a.valid_until else {}),
            }
        )
    policy = dd.supply_chain_due_diligence_report.due_diligence_policy
    unknown = sum(x.fraction for x in shares.origins if x.category == "unknown")
    return {
        "type": ["ProductPassport"],
        "id": epc.record_uri("passport", lot),
        "product": {
            "type": ["Product"],
            "id": epc.lot_uri(lot),
            "name": f"{dd.mineral.replace('_', ' ')} lot {lot}",
            "batchNumber": lot,
            "dimensions": {"weight": {"value": dd.mass_kg, "unit": epc.KILOGRAM}},
        },
        "granularityLevel": "batch",
        "materialsProvenance": materials,
        "conformityClaim": claims,
        "traceabilityInformation": [
            {
                "type": ["TraceabilityPerformance"],
                "valueChainProcess": "chain of custody",
                "verifiedRatio": round(1.0 - min(max(unknown, 0.0), 1.0), 6),
                "traceabilityEvent": [
                    {
                        "type": ["SecureLink", "Link"],
                        "linkURL": f"{custody_url.rstrip('/')}/lots/{quote(lot, safe=':')}/untp/dte",
                        "linkName": f"Digital Traceability Events of lot {lot}",
                        "linkType": DTE_LINK_TYPE,
                    }
                ],
            }
        ],
        "dueDiligence": {
            "smeltersAndRefiners": smelters,
            "risks": risks,
            "openRisks": sum(1 for r in risks if r["status"] == "open"),
            "policyScore": policy.total if policy else None,
            "responsibleShare": {
                "origins": [_share(x) for x in shares.origins],
                "smelters": [_share(x) for x in shares.smelters],
            },
            "truncated": dd.truncated,
            "unverified": dd.unverified,
        },
    }
