// Reference implementation of the channel assignment of selectivity.json, from docs/selectivity.md
// alone (section "Assigning a channel"); Node 18+, no dependency. Check it against test vectors:
//   node docs/channel_assignment.js outputs/default/selectivity_vectors.json
'use strict';
const crypto = require('crypto');
const M = (1n << 64n) - 1n;
const rotl = (x, b) => ((x << b) | (x >> (64n - b))) & M;

function siphash24(key, bytes) { // SipHash-2-4: 16-byte key, 64-bit result
  const k0 = key.readBigUInt64LE(0), k1 = key.readBigUInt64LE(8);
  const v = [k0 ^ 0x736f6d6570736575n, k1 ^ 0x646f72616e646f6dn, k0 ^ 0x6c7967656e657261n, k1 ^ 0x7465646279746573n];
  const rounds = (n) => { for (let i = 0; i < n; i++) {
    v[0] = (v[0] + v[1]) & M; v[1] = rotl(v[1], 13n) ^ v[0]; v[0] = rotl(v[0], 32n);
    v[2] = (v[2] + v[3]) & M; v[3] = rotl(v[3], 16n) ^ v[2];
    v[0] = (v[0] + v[3]) & M; v[3] = rotl(v[3], 21n) ^ v[0];
    v[2] = (v[2] + v[1]) & M; v[1] = rotl(v[1], 17n) ^ v[2]; v[2] = rotl(v[2], 32n);
  } };
  const whole = bytes.length - (bytes.length % 8), last = Buffer.alloc(8);
  for (let i = 0; i < whole; i += 8) { const m = bytes.readBigUInt64LE(i); v[3] ^= m; rounds(2); v[0] ^= m; }
  bytes.copy(last, 0, whole); last[7] = bytes.length & 0xff;
  const b = last.readBigUInt64LE(0); v[3] ^= b; rounds(2); v[0] ^= b; v[2] ^= 0xffn; rounds(4);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

function keyedHash(id, key) { // step 1 of the page: SipHash of the id, then the splitmix64 finaliser
  const k = Buffer.from(crypto.createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 16), 'ascii');
  let h = siphash24(k, Buffer.from(id, 'utf8'));
  h ^= h >> 30n; h = (h * 0xbf58476d1ce4e5b9n) & M; h ^= h >> 27n; h = (h * 0x94d049bb133111ebn) & M;
  return h ^ (h >> 31n);
}
const tiebreak = (id, key) => Number(keyedHash(id, key + '/tie-break') >> 11n) * 2 ** -53;
const text = (v) => (v === null || v === undefined ? null : String(v));
const own = (object, name) => Object.prototype.hasOwnProperty.call(object, name);

function assign(policy, key, d) { // -> {channel, selection_reason, selection_probability}
  const r = policy.random;
  if (r.rate >= 1 || keyedHash(d.declaration_id, key) < BigInt(Math.floor(r.rate * 2 ** 64))) {
    return { channel: r.channel, selection_reason: r.reason, selection_probability: r.rate };
  }
  for (const rule of policy.rules) { // the first rule listed that matches wins
    const v = text(d[rule.column]);
    if (v !== null && (rule.values.includes(v) || rule.prefix.some((p) => v.startsWith(p)))) {
      return { channel: policy.channels[0].name, selection_reason: rule.name, selection_probability: 1 };
    }
  }
  const office = text(d.office) ?? '';
  const group = own(policy.offices, office) ? policy.offices[office] : policy.cutoffs;
  const cuts = d.aeo === true ? group.aeo_cutoffs : group.cutoffs;
  for (const { name } of policy.channels) { // in order of severity; null cut-off: nobody
    const c = cuts[name];
    if (c.score === null) continue;
    const reached = d.score > c.score || (d.score === c.score && (d.margin > c.margin
      || (d.margin === c.margin && tiebreak(d.declaration_id, key) >= c.tiebreak)));
    if (reached) return { channel: name, selection_reason: 'model', selection_probability: null };
  }
  return { channel: policy.serving.default_channel, selection_reason: null, selection_probability: null };
}

if (require.main === module) {
  const file = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
  const wrong = file.vectors.filter(({ input, expected }) => {
    const got = assign(file.policy, file.key, input);
    const same = Object.keys(expected).every((k) => got[k] === expected[k]);
    if (!same) console.log(`${input.declaration_id}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`);
    return !same;
  });
  console.log(`${file.vectors.length - wrong.length} of ${file.vectors.length} vectors agree`);
  process.exit(wrong.length ? 1 : 0);
}
module.exports = { assign, keyedHash, tiebreak };
