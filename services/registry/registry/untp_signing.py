"""UNTP credentials signed with the registry's Ed25519 keys (VC-JOSE, `shared.vcjose`), for custody (a lot's Digital
Traceability Events) and audit (a product lot's Digital Product Passport).

`POST /untp/credentials` is the operator's: custody and audit call it with the operator token they hold, on behalf
of the caller they already checked may read the lot. A participant's token is refused (403), so no participant can
get content of its choosing signed. The registry, not the caller, writes the envelope (id, issuer, validFrom,
`@context` and schema of UNTP 0.6.1), checks the whole credential against `shared.untp`, signs it with its active key
and records what it signed (`untp_credentials`), in the same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from registry import credentials
from registry.sessions import SessionDep
from registry.untp_models import UntpCredential
from shared import untp, vcjose
from shared.auth import OperatorDep
from shared.problems import InvalidInput, problem_responses

"""The registry as the credentials' issuer. Its keys are resolved through `/.well-known/jwks.json` (the JWS's
`kid`), not through the DID."""

router = APIRouter(tags=["untp"], responses=problem_responses(401, 403, 422, 503))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def sign(*, session: AsyncSession, request: vcjose.SignRequest) -> vcjose.SignedCredential:
    """Complete, check, sign and record the credential `request` asks for."""
    now = datetime.now(UTC)
    credential_id = f"urn:uuid:{uuid.uuid4()}"
    body = {
        **untp.envelope(request.kind, credential_id=credential_id, issuer=untp.ISSUER, valid_from=_stamp(now)),
        "credentialSubject": request.subject,
    }
    try:
        credential = untp.KINDS[request.kind].model_validate(body).as_json()
        orjson.dumps(credential)  # what cannot be JSON-encoded (an integer beyond 64 bits) is refused, not signed
    except orjson.JSONEncodeError as e:
        raise InvalidInput("body.subject", f"not encodable as JSON ({e}); nothing was signed") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"body.subject ({where})", f"{first['msg']}; nothing was signed") from e
    except ValueError as e:
        raise InvalidInput("body.subject", f"{e}; nothing was signed") from e
    key = await credentials.active_key(session)
    token = vcjose.sign(credential, private_key=credentials._private_key(key.private_pem), kid=key.kid)
    digest = hashlib.sha256(token.encode()).hexdigest()
    session.add(
        UntpCredential(
            id=credential_id,
            kind=request.kind,
            lot_id=request.lot_id,
            sha256=digest,
            kid=key.kid,
            issued_at=now,
            requested_by=request.requested_by,
            on_behalf_of=request.on_behalf_of,
        )
    )
    await session.flush()
    return vcjose.SignedCredential(
        id=credential_id,
        kind=request.kind,
        lot_id=request.lot_id,
        kid=key.kid,
        sha256=digest,
        issued_at=now,
        jwt=token,
        credential=credential,
    )


@router.post(
    vcjose.SIGN_PATH,
    status_code=201,
    response_model=vcjose.SignedCredential,
    summary="Sign a UNTP 0.6.1 credential about a lot (operator: custody and audit on behalf of their callers): the "
    "registry writes the envelope, checks it against the UNTP models, signs it (VC-JOSE, EdDSA) and records it",
)
async def sign_credential(request: vcjose.SignRequest, session: SessionDep, _: OperatorDep) -> vcjose.SignedCredential:
    return await sign(session=session, request=request)
