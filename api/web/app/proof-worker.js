// The proof of work of a join (issue 20), solved off the page's thread: find a nonce such that SHA-256 of
// `<challenge>.<nonce>` begins with `bits` zero bits. A plain SHA-256 (crypto.subtle is asynchronous and costs
// a promise per try, several times slower) over the text's bytes; the 64-byte blocks of the fixed prefix are
// hashed once, so each try compresses only the last one or two blocks.
//
// In: {challenge, bits}. Out: {progress: tries} every 16,384 tries, then {nonce, tries, ms}.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INIT = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const W = new Uint32Array(64);

/** Compresses the 64-byte block at `bytes[offset..]` into `state`. */
function compress(state, bytes, offset) {
  for (let i = 0; i < 16; i++) {
    const j = offset + i * 4;
    W[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0;
    d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0; state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0; state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0; state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0; state[7] = (state[7] + h) | 0;
}

/** Does the digest (as 8 words) begin with `bits` zero bits? */
function leadingZeros(state, bits) {
  for (let i = 0; i < 8 && bits > 0; i++) {
    const take = Math.min(32, bits);
    if (state[i] >>> (32 - take) !== 0) return false;
    bits -= take;
  }
  return true;
}

function solve(challenge, bits) {
  const prefix = new TextEncoder().encode(`${challenge}.`);
  const full = prefix.length - (prefix.length % 64);
  const mid = new Uint32Array(INIT);
  for (let off = 0; off < full; off += 64) compress(mid, prefix, off);
  const rest = prefix.subarray(full);
  const tail = new Uint8Array(192);
  const state = new Uint32Array(8);
  const started = Date.now();
  for (let n = 0; ; n++) {
    const nonce = String(n);
    let len = rest.length;
    tail.fill(0);
    tail.set(rest, 0);
    for (let i = 0; i < nonce.length; i++) tail[len++] = nonce.charCodeAt(i);
    const total = prefix.length + nonce.length;
    tail[len] = 0x80;
    const blocks = len + 9 <= 64 ? 1 : 2;
    const end = blocks * 64;
    const bitLen = total * 8;
    tail[end - 4] = (bitLen >>> 24) & 0xff;
    tail[end - 3] = (bitLen >>> 16) & 0xff;
    tail[end - 2] = (bitLen >>> 8) & 0xff;
    tail[end - 1] = bitLen & 0xff;
    state.set(mid);
    for (let b = 0; b < blocks; b++) compress(state, tail, b * 64);
    if (leadingZeros(state, bits)) {
      postMessage({ nonce, tries: n + 1, ms: Date.now() - started });
      return;
    }
    if ((n & 16383) === 16383) postMessage({ progress: n + 1 });
  }
}

onmessage = (event) => solve(event.data.challenge, event.data.bits);
