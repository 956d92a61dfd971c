#!/usr/bin/env python3
# Writes the seed corpora in corpus/<harness>/: Engine.IO and Socket.IO
# frames of every type, JWTs of many shapes (as tokens and as the
# "header JSON <newline> payload JSON" form fuzz_jwt signs itself) and
# resource ids.  Run it from anywhere; it rewrites only files it names.
import base64
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"fuzzing-secret-fuzzing-secret-0123456789"   # SECRET in fuzz_jwt.c


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# -------- Engine.IO / Socket.IO frames (one WebSocket text frame each)
sio = {
    # Engine.IO packets
    "eio_open": '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}',
    "eio_close": "1",
    "eio_ping": "2",
    "eio_ping_probe": "2probe",
    "eio_pong": "3",
    "eio_pong_probe": "3probe",
    "eio_upgrade": "5",
    "eio_noop": "6",
    "eio_bad_type": "7",
    "eio_message_empty": "4",
    # CONNECT
    "connect_bare": "40",
    "connect_auth": '40{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"}',
    "connect_nsp": "40/admin,",
    "connect_nsp_auth": '40/admin,{"token":"x"}',
    "connect_auth_array": '40["not","an","object"]',
    "connect_auth_string": '40"token"',
    # DISCONNECT
    "disconnect": "41",
    "disconnect_nsp": "41/admin,",
    # EVENT, every event of the protocol
    "join_editor": '42["presence:join",{"resourceId":"document:1/tab:a","mode":"editor"}]',
    "join_viewer": '42["presence:join",{"resourceId":"document:1","mode":"viewer"}]',
    "leave": '42["presence:leave",{"resourceId":"document:1"}]',
    "acquire": '423["lock:acquire",{"resourceId":"document:1/tab:a"}]',
    "renew": '424["lock:renew",{"resourceId":"document:1/tab:a"}]',
    "release": '425["lock:release",{"resourceId":"document:1/tab:a"}]',
    "request": '426["lock:request",{"resourceId":"document:1/tab:a"}]',
    "save": '421["doc:save",{"resourceId":"document:1/tab:a","content":"x","baseVersion":3}]',
    "save_unicode": '427["doc:save",{"resourceId":"document:1/tab:a","content":"\\u00e4\\ud83d\\ude00 caf\u00e9 \\n\\t\\"q\\"","baseVersion":null}]',
    "event_noargs": '42["ping"]',
    "event_many_args": '42["x",1,"two",[3],{"four":4},null,true,false,-1.5e10]',
    "event_escaped_name": '42["lock\\u003aacquire",{}]',
    "event_surrogate_name": '42["\\ud83d\\ude00",{}]',
    "event_unpaired_surrogate": '42["\\ud83d",{}]',
    "event_reserved": '42["connect",{}]',
    "event_reserved2": '42["disconnecting"]',
    "event_long_name": '42["' + "n" * 65 + '"]',
    "event_name_not_string": "42[1,2]",
    "event_empty_array": "42[]",
    "event_object": '42{"a":1}',
    "event_nsp_ack": '42/admin,17["doc:save",{}]',
    "event_ack_max": '429007199254740991["x"]',
    "event_ack_overflow": '429007199254740992["x"]',
    "event_ack_leading_zero": '4207["x"]',
    "event_deep": "42[\"x\"," + "[" * 70 + "]" * 70 + "]",
    "event_deep_ok": "42[\"x\"," + "[" * 60 + "]" * 60 + "]",
    "event_trailing": '42["x"] ',
    "event_numbers": '42["x",0,-0,1e400,123456789012345678901234567890,0.1,1E-7]',
    "event_bad_json": '42["x",{"a":}]',
    "event_nul": '42["x","a\x00b"]',
    "event_bad_utf8": b'42["x","\xc3\x28"]',
    "event_overlong_utf8": b'42["x","\xc0\xaf"]',
    # ACK
    "ack": "431[]",
    "ack_payload": '4312[{"ok":true}]',
    "ack_nsp": "43/admin,7[]",
    "ack_no_id": "43[]",
    # CONNECT_ERROR (server only)
    "connect_error": '44{"message":"Not authorized","data":{"code":"AUTH_TOKEN_INVALID"}}',
    # binary packets and placeholders
    "binary_event": '451-["x",{"_placeholder":true,"num":0}]',
    "binary_event_ack": '452-3["doc:save",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
    "binary_event_nsp": '451-/admin,["x",{"_placeholder":true,"num":0}]',
    "binary_ack": '461-5[{"_placeholder":true,"num":0}]',
    "binary_bad_count": '45-["x"]',
    "sio_bad_type": "47",
    "nsp_no_comma": "42/admin",
    "nsp_long": "40/" + "a" * 130 + ",",
}
for k, v in sio.items():
    write("sio", k, v)

# -------- JWTs
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(header, payload, secret=SECRET, sig=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    inp = b64(h) + "." + b64(p)
    if sig is None:
        sig = b64(hmac.new(secret, inp.encode(), hashlib.sha256).digest())
    return inp + "." + sig


HS = {"alg": "HS256", "typ": "JWT"}
good = {"sub": "u1", "name": "Ann", "exp": 1900000000, "iat": 1799999000}
jwt_tokens = {
    "hs256_resigned": token(HS, good, secret=b"fuzzing-secret-fuzzing-secret-012345678"),
    "hs256_wrong_secret": token(HS, good, secret=b"another-secret-another-secret-000000"),
    "hs256_bad_sig": token(HS, good, sig="AAAA"),
    "alg_none": token({"alg": "none"}, good, sig=""),
    "none_upper": token({"alg": "NONE"}, good, sig=""),
    "rs256": token({"alg": "RS256", "typ": "JWT"}, good, sig=b64(b"\x00" * 256)),
    "es256": token({"alg": "ES256"}, good, sig=b64(b"\x01" * 64)),
    "hs512": token({"alg": "HS512"}, good),
    "alg_number": token({"alg": 256}, good),
    "typ_wrong": token({"alg": "HS256", "typ": "JOSE+JSON"}, good),
    "crit": token({"alg": "HS256", "crit": ["exp"]}, good),
    "kid_number": token({"alg": "HS256", "kid": 5}, good),
    "jwk_header": token({"alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}}, good),
    "two_parts": b64(json.dumps(HS).encode()) + "." + b64(json.dumps(good).encode()),
    "four_parts": token(HS, good) + ".x",
    "padded": token(HS, good) + "==",
    "header_not_json": token(b"not json", good),
    "header_array": token(b"[1,2]", good),
    "empty_parts": "..",
    "dots_only": ".",
}
for k, v in jwt_tokens.items():
    write("jwt", k, v)

# header <newline> payload, signed by the harness; or a bare payload
jwt_signed = {
    "s_plain": ("", good),
    "s_full": (HS, {**good, "iss": "https://issuer.example", "aud": "collab", "nbf": 1799999000}),
    "s_aud_array": (HS, {**good, "iss": "https://issuer.example", "aud": ["other", "collab"]}),
    "s_aud_bad": (HS, {**good, "iss": "https://issuer.example", "aud": [1]}),
    "s_no_exp": (HS, {"sub": "u1"}),
    "s_exp_float": (HS, {"sub": "u1", "exp": 1900000000.5}),
    "s_exp_string": (HS, {"sub": "u1", "exp": "1900000000"}),
    "s_expired": (HS, {"sub": "u1", "exp": 1700000000}),
    "s_nbf_future": (HS, {"sub": "u1", "exp": 1900000000, "nbf": 1850000000}),
    "s_exp_huge": (HS, {"sub": "u1", "exp": 1e300}),
    "s_sub_email": (HS, {"sub": "ann@example.org", "exp": 1900000000}),
    "s_sub_at_only": (HS, {"sub": "@x", "exp": 1900000000}),
    "s_name_email": (HS, {"sub": "u1", "name": "a@b", "preferred_username": "ann", "exp": 1900000000}),
    "s_name_control": (HS, {"sub": "u1", "name": "A\u202eB", "exp": 1900000000}),
    "s_name_long": (HS, {"sub": "u1", "name": "\u00e9" * 100, "exp": 1900000000}),
    "s_sub_long": (HS, {"sub": "x" * 257, "exp": 1900000000}),
    "s_sub_empty": (HS, {"sub": "", "exp": 1900000000}),
    "s_sub_number": (HS, {"sub": 12, "exp": 1900000000}),
    "s_dup_keys": (HS, b'{"sub":"u1","sub":"u2","exp":1900000000}'),
    "s_payload_array": (HS, b'[1]'),
    "s_kid": ({"alg": "HS256", "kid": "k1"}, good),
    "s_escapes": (HS, b'{"sub":"u\\u0031","name":"\\ud83d\\ude00","exp":1900000000}'),
    "s_nul_sub": (HS, b'{"sub":"a\\u0000b","exp":1900000000}'),
}
for k, (h, p) in jwt_signed.items():
    pb = p if isinstance(p, bytes) else json.dumps(p, separators=(",", ":")).encode()
    if h == "":
        data = pb
    else:
        data = json.dumps(h, separators=(",", ":")).encode() + b"\n" + pb
    write("jwt", k, data)

# -------- resource ids
rids = {
    "doc": "document:123",
    "tab": "document:123/tab:diagnosis",
    "deep": "a:1/b:2/c:3/d:4/e:5/f:6/g:7/h:8",
    "too_deep": "/".join("k%d:v" % i for i in range(40)),
    "utf8": "Dok:Befund-\u00e4rztlich",
    "emoji": "document:\U0001F600/tab:\u6f22\u5b57",
    "empty": "",
    "slash": "/",
    "trailing_slash": "document:1/",
    "leading_slash": "/document:1",
    "double_slash": "document:1//tab:a",
    "no_colon": "document",
    "empty_kind": ":1",
    "empty_key": "document:",
    "two_colons": "document:1:2",
    "space": "document:1 2",
    "tab_char": "document:1\t",
    "nul": "document:1\x00",
    "del": "document:1\x7f",
    "c1_control": "document:\u0085",
    "bad_utf8": b"document:\xc3\x28",
    "overlong": b"document:\xc0\xaf",
    "surrogate": b"document:\xed\xa0\x80",
    "long_segment": "document:" + "k" * 119,
    "too_long_segment": "document:" + "k" * 120,
    "bidi": "document:a\u202eb",
}
for k, v in rids.items():
    write("resource_id", k, v)
