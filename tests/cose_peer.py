"""A COSE_Mac0 peer built on pycose, for tests/test_cose_interop.py.

It runs in its own environment (.venv-cose: pycose 1.1 with cbor2 5, since
pycose cannot decode beside cbor2 6) and speaks one JSON object per line on
stdin and stdout, bytes as hex:

    {"op": "version"}                                   -> {"pycose": "1.1.0", "cbor2": "5.9.0"}
    {"op": "verify", "msg": h, "keys": {kid: key}, "aad": h}
        -> {"ok": bool, "kid": h or null, "payload": h or null,
            "refused": null or why, "exception": null or "Type: message"}
    {"op": "mac", "key": h, "kid": h, "payload": h, "aad": h, "kid_protected": bool}
        -> {"msg": h}

A request pycose itself refuses (a key not of 16, 24 or 32 bytes) gets {"error": text}.

"verify" does what a COSE verifier of huaico frames must: decode, find the
key by the message's kid, require alg HMAC 256/64, check the tag. A refusal
says at which step, so that a test can tell a forgery from garbage (and a
peer that broke from either): "malformed" (pycose could not decode it),
"not_mac0", "bad_alg", "unknown_kid", "bad_tag" (verify_tag said False), or
"verify_error" (verify_tag raised). Where pycose raised, "exception" names
its type and message.
"""
import importlib.metadata
import json
import sys

from pycose.algorithms import HMAC25664
from pycose.headers import KID, Algorithm
from pycose.keys import SymmetricKey
from pycose.messages import CoseMessage, Mac0Message


def _refused(why, kid=None, exc=None):
    return {"ok": False, "kid": kid, "payload": None, "refused": why,
            "exception": None if exc is None else "%s: %s" % (type(exc).__name__, exc)}


def _verify(request):
    keys = {bytes.fromhex(kid): bytes.fromhex(key) for kid, key in request["keys"].items()}
    try:
        message = CoseMessage.decode(bytes.fromhex(request["msg"]))
    except Exception as exc:  # pycose raises many types for bad input: reported, not judged
        return _refused("malformed", exc=exc)
    if not isinstance(message, Mac0Message):
        return _refused("not_mac0")
    kid = message.get_attr(KID)
    if message.get_attr(Algorithm) is not HMAC25664:
        return _refused("bad_alg")
    if not isinstance(kid, bytes) or kid not in keys:
        return _refused("unknown_kid")
    message.key = SymmetricKey(k=keys[kid])
    message.external_aad = bytes.fromhex(request["aad"])
    try:
        ok = message.verify_tag()
    except Exception as exc:
        return _refused("verify_error", kid.hex(), exc)
    if not ok:
        return _refused("bad_tag", kid.hex())
    return {"ok": True, "kid": kid.hex(), "payload": message.payload.hex(), "refused": None,
            "exception": None}


def _mac(request):
    kid = bytes.fromhex(request["kid"])
    protected = {Algorithm: HMAC25664}
    unprotected = {}
    if request.get("kid_protected"):
        protected[KID] = kid
    else:
        unprotected[KID] = kid
    message = Mac0Message(phdr=protected, uhdr=unprotected, payload=bytes.fromhex(request["payload"]),
                          external_aad=bytes.fromhex(request["aad"]),
                          key=SymmetricKey(k=bytes.fromhex(request["key"])))
    return {"msg": message.encode().hex()}


def main():
    ops = {
        "version": lambda request: {"pycose": importlib.metadata.version("pycose"),
                                    "cbor2": importlib.metadata.version("cbor2")},
        "verify": _verify,
        "mac": _mac,
    }
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = ops[request["op"]](request)
        except Exception as exc:  # a bad request is the test's bug: report it, keep serving
            answer = {"error": "%s: %r" % (request.get("op"), exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
