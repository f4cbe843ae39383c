#!/usr/bin/env python3
"""Independent check of the golden fixtures in this directory against docs/format.md.

Written from the spec, not from the Go code: HKDF, Ed25519, AES-GCM and Argon2id come from
the Python "cryptography" package (>= 44), HChaCha20, BLAKE3 (single-block inputs) and
CRC-32C are implemented below. Run from this directory: python3 crosscheck.py
"""
import json, struct, hmac, hashlib
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives import serialization
g = json.load(open('keys-v1.json'))
secret = bytes.fromhex(g['secret'])
def hk(label): return HKDF(hashes.SHA256(), 32, None, label.encode()).derive(secret).hex()
for f, l in [('metadata_key','metadata'),('chunker_key','chunker'),('content_key','content'),('chunk_id_key','chunk-id'),('signing_seed','signing')]:
    assert hk('scatter v1 '+l) == g[f], f
pub = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(g['signing_seed'])).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
assert pub.hex() == g['public_key']
assert hk('scatter v1 storage') == g['storage_seed']
spub = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(g['storage_seed'])).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
assert spub.hex() == g['storage_public_key']
# sealed chunk with chunk_key (BLAKE3 not available here: taken from the fixture)
sealed = open('chunk-v1.bin','rb').read()
cid = bytes.fromhex(g['chunk_id'])
assert sealed[0] == 1
pt = AESGCM(bytes.fromhex(g['chunk_key'])).decrypt(bytes(12), sealed[1:], bytes([1]) + cid)
assert pt.decode() == g['plaintext']
# recovery key
def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xffffffff
raw = bytes([1]) + secret + struct.pack('>I', crc32c(bytes([1]) + secret))
bits = ''.join(f'{b:08b}' for b in raw) + '0000'
alpha = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
chars = ''.join(alpha[int(bits[i:i+5], 2)] for i in range(0, len(bits), 5))
assert '-'.join(chars[i:i+5] for i in range(0, 60, 5)) == g['recovery_key']
# key file
kf = open('keyfile-v1.bin','rb').read()
assert kf[:10] == b'scatterkey' and kf[10] == 1
t, m = struct.unpack('>II', kf[11:19]); p = kf[19]; sl = kf[20]
salt = kf[21:21+sl]; nonce = kf[21+sl:21+sl+24]; ct = kf[21+sl+24:]
key = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(b'correct horse battery staple')
def rotl(v, c): return ((v << c) & 0xffffffff) | (v >> (32 - c))
def hchacha(key, n16):
    s = list(struct.unpack('<4I', b'expand 32-byte k')) + list(struct.unpack('<8I', key)) + list(struct.unpack('<4I', n16))
    def qr(a,b,c,d):
        s[a]=(s[a]+s[b])&0xffffffff; s[d]=rotl(s[d]^s[a],16)
        s[c]=(s[c]+s[d])&0xffffffff; s[b]=rotl(s[b]^s[c],12)
        s[a]=(s[a]+s[b])&0xffffffff; s[d]=rotl(s[d]^s[a],8)
        s[c]=(s[c]+s[d])&0xffffffff; s[b]=rotl(s[b]^s[c],7)
    for _ in range(10):
        qr(0,4,8,12); qr(1,5,9,13); qr(2,6,10,14); qr(3,7,11,15)
        qr(0,5,10,15); qr(1,6,11,12); qr(2,7,8,13); qr(3,4,9,14)
    return struct.pack('<8I', *(s[0:4] + s[12:16]))
sub = hchacha(key, nonce[:16])
sec = ChaCha20Poly1305(sub).decrypt(bytes(4) + nonce[16:], ct, kf[:21+sl+24])
assert sec == secret
print('all golden values cross-checked', t, m, p, sl)
# BLAKE3 keyed hash, single-block inputs only (<= 64 bytes)
IV = [0x6A09E667,0xBB67AE85,0x3C6EF372,0xA54FF53A,0x510E527F,0x9B05688C,0x1F83D9AB,0x5BE0CD19]
PERM = [2,6,3,10,7,0,4,13,1,11,12,5,9,14,15,8]
def rotr(v,c): return ((v >> c) | (v << (32-c))) & 0xffffffff
def b3_keyed(key, msg):
    assert len(msg) <= 64
    k = list(struct.unpack('<8I', key))
    m = list(struct.unpack('<16I', msg + bytes(64-len(msg))))
    flags = 1 | 2 | 8 | 16  # CHUNK_START | CHUNK_END | ROOT | KEYED_HASH
    s = k + IV[:4] + [0, 0, len(msg), flags]
    def g(a,b,c,d,x,y):
        s[a]=(s[a]+s[b]+x)&0xffffffff; s[d]=rotr(s[d]^s[a],16)
        s[c]=(s[c]+s[d])&0xffffffff; s[b]=rotr(s[b]^s[c],12)
        s[a]=(s[a]+s[b]+y)&0xffffffff; s[d]=rotr(s[d]^s[a],8)
        s[c]=(s[c]+s[d])&0xffffffff; s[b]=rotr(s[b]^s[c],7)
    for r in range(7):
        g(0,4,8,12,m[0],m[1]); g(1,5,9,13,m[2],m[3]); g(2,6,10,14,m[4],m[5]); g(3,7,11,15,m[6],m[7])
        g(0,5,10,15,m[8],m[9]); g(1,6,11,12,m[10],m[11]); g(2,7,8,13,m[12],m[13]); g(3,4,9,14,m[14],m[15])
        m = [m[PERM[i]] for i in range(16)]
    return struct.pack('<8I', *[s[i]^s[i+8] for i in range(8)])
assert b3_keyed(bytes.fromhex(g['chunk_id_key']), g['plaintext'].encode()).hex() == g['chunk_id']
assert b3_keyed(bytes.fromhex(g['content_key']), cid).hex() == g['chunk_key']
print('BLAKE3 chunk ID and chunk key cross-checked')
