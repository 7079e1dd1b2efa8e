import assert from "node:assert/strict";
import { InvalidRequestError } from "../../src/base/errors.ts";
import { decode, encode, encodedLength, Nixbase32DecodeError } from "../../src/store/nixbase32.ts";

const fromHex = (h: string) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));

// Vectors printed by Nix 2.8 (`nix-hash --to-base32`, `nix-hash --flat --base32`),
// nix-compat's store path test, and one worked by hand.
const VECTORS: [string, string][] = [
  ["", ""],
  ["1f", "0z"],
  ["1f2f", "0bqz"], // worked by hand: 0x2f1f read 5 bits at a time, high first
  ["0000000000000000000000000000000000000001", "04000000000000000000000000000000"],
  ["ff000000000000000000000000000000", "0000000000000000000000007z"],
  ["1f000000000000000000000000000000", "0000000000000000000000000z"],
  ["8a12321522fd91efbd60ebb2481af88580f61600", "00bgd045z0d4icpbc2yyz4gx48ak44la"],
  [
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", // sha256("abc")
    "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
  ],
];

Deno.test("nixbase32: known vectors encode and decode", () => {
  for (const [hex, b32] of VECTORS) {
    assert.equal(encode(fromHex(hex)), b32, hex);
    assert.deepEqual(decode(b32), fromHex(hex), b32);
  }
});

Deno.test("nixbase32: round trips for every length up to 64", () => {
  for (let n = 0; n <= 64; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7) & 0xff);
    const text = encode(bytes);
    assert.equal(text.length, encodedLength(n));
    assert.deepEqual(decode(text), bytes);
  }
  assert.equal(encodedLength(20), 32);
  assert.equal(encodedLength(32), 52);
});

Deno.test("nixbase32: decode rejects bad input, naming the text", () => {
  const bad: [string, RegExp][] = [
    ["00bgd045z0d4icpbc2yyz4gx48aku4la", /invalid character "u" at 28/], // e, o, u, t not used
    ["0e", /invalid character "e"/],
    ["0O", /invalid character "O"/], // upper case is not accepted
    ["0", /length 1/], // no byte count encodes to 1 character
    ["000", /length 3/],
    ["8z", /non-zero padding/], // 2 chars = 1 byte; bits 8 and 9 must be zero
    ["zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", /non-zero padding/],
    ["0ü", /invalid character/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => decode(text), (e: Error) => {
      assert.ok(e instanceof Nixbase32DecodeError && e instanceof InvalidRequestError);
      assert.match(e.message, re, text);
      assert.ok(e.message.includes(JSON.stringify(text)), e.message);
      return true;
    });
  }
  assert.throws(() => decode("0z", 20), /want 32 characters/);
});
