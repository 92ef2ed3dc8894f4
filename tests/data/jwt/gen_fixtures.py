#!/usr/bin/python3
"""Regenerate the JWT fixtures with PyJWT (Debian python3-jwt 2.6).

Run from this directory: /usr/bin/python3 gen_fixtures.py
Not needed at test time: the tokens are checked in.  Times are fixed; the tests verify
at NOW = 1700000100.  Attack tokens that PyJWT refuses to produce (alg none, HS256 keyed
with the RSA public key PEM, duplicate keys) are assembled by hand.
"""
import base64
import hashlib
import hmac
import json

import jwt

IAT = 1700000000
EXP = IAT + 900
SECRET = open("hs256.key", "rb").read()
RS_PRIV = open("rs256_private.pem", "rb").read()
RS_PUB = open("rs256_public.pem", "rb").read()
ES_PRIV = open("es256_private.pem", "rb").read()


def claims(**over):
    c = {
        "sub": "user-42",
        "roles": ["admin", "user"],
        "scopes": ["products:read", "products:write"],
        "iat": IAT,
        "nbf": IAT,
        "exp": EXP,
        "iss": "https://auth.keel.test",
        "aud": "keel-api",
        "type": "access",
        "sid": "3f1c2a9e-6d0b-4e7a-9a51-0c2f8e4d7b10",
        "jti": "b7e2d4c1-8a3f-4f60-9d2e-5a1b7c3e9f08",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def manual(header, payload_bytes, key=None):
    h = b64(json.dumps(header, separators=(",", ":")).encode())
    p = b64(payload_bytes)
    signing_input = (h + "." + p).encode()
    sig = b64(hmac.new(key, signing_input, hashlib.sha256).digest()) if key else ""
    return h + "." + p + "." + sig


def write(name, token):
    with open(name + ".jwt", "w") as f:
        f.write(token)


hs = lambda c, **kw: jwt.encode(c, SECRET, algorithm="HS256", headers={"kid": "hs1"}, **kw)

write("hs256_valid", hs(claims()))
write("hs256_nokid", jwt.encode(claims(), SECRET, algorithm="HS256"))
write("rs256_valid", jwt.encode(claims(), RS_PRIV, algorithm="RS256", headers={"kid": "rs1"}))
write("es256_valid", jwt.encode(claims(), ES_PRIV, algorithm="ES256", headers={"kid": "es1"}))
write("hs256_refresh", hs(claims(type="refresh", roles=None, scopes=None)))
write("hs256_aud_array", hs(claims(aud=["billing", "keel-api"])))
write("hs256_aud_array_other", hs(claims(aud=["billing", "reports"])))
write("hs256_expired", hs(claims(exp=IAT + 60)))
write("hs256_nbf_future", hs(claims(nbf=IAT + 600)))
write("hs256_wrong_aud", hs(claims(aud="other-api")))
write("hs256_wrong_iss", hs(claims(iss="https://evil.test")))
write("hs256_no_exp", hs(claims(exp=None)))
write("hs256_typ_at_jwt", jwt.encode(claims(), SECRET, algorithm="HS256",
                                     headers={"kid": "hs1", "typ": "at+jwt"}))

# alg none (unsigned), also with odd capitalisation.
payload = json.dumps(claims(), separators=(",", ":")).encode()
write("attack_alg_none", manual({"alg": "none", "typ": "JWT"}, payload))
write("attack_alg_None", manual({"alg": "None", "typ": "JWT"}, payload))
# RS256 -> HS256 confusion: HMAC keyed with the RSA public key PEM (CVE-2015-9235).
write("attack_hs256_rsa_pubkey", manual({"alg": "HS256", "typ": "JWT", "kid": "rs1"}, payload,
                                        RS_PUB))
# Tampered payload: valid HS256 token with the payload segment replaced.
good = hs(claims()).split(".")
evil = b64(json.dumps(claims(sub="admin", roles=["root"]), separators=(",", ":")).encode())
write("attack_tampered", good[0] + "." + evil + "." + good[2])
write("attack_truncated", hs(claims())[:-5])
write("attack_garbage", "not.a.jwt-at-all!")
# Duplicate keys: correctly signed, but the payload names "sub" twice.
write("attack_dup_keys", manual({"alg": "HS256", "typ": "JWT", "kid": "hs1"},
                                b'{"sub":"user-42","sub":"admin","exp":1700000900}', SECRET))
