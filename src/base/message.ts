/**
 * The protobuf-es basics every message type of this library is built on: {@linkcode Message},
 * {@linkcode UnknownField} and {@linkcode WireType}. They are declared here, with the same shape
 * as in `@bufbuild/protobuf` 2, so that the public API documents them; values of the
 * protobuf-es types and of these are interchangeable.
 *
 * @module
 */

/**
 * The protobuf wire type of an encoded field, as in `@bufbuild/protobuf/wire`. It tells a
 * decoder how to read (or skip) a field it does not know.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type UnknownField, WireType } from "@nixcas/nixcas/castore";
 * // Field 5, a varint with the value 1:
 * const field: UnknownField = { no: 5, wireType: WireType.Varint, data: new Uint8Array([1]) };
 * assert.equal(field.wireType, WireType.Varint);
 * ```
 */
export enum WireType {
  /** Used for int32, int64, uint32, uint64, sint32, sint64, bool, enum. */
  Varint = 0,
  /** Used for fixed64, sfixed64, double: 8 bytes, little-endian. */
  Bit64 = 1,
  /** Used for string, bytes, embedded messages and packed repeated fields. */
  LengthDelimited = 2,
  /** Start of a tag-delimited aggregate, such as a proto2 group. */
  StartGroup = 3,
  /** End of a tag-delimited aggregate. */
  EndGroup = 4,
  /** Used for fixed32, sfixed32, float: 4 bytes, little-endian. */
  Bit32 = 5,
}

/**
 * A field a decoder did not know, kept on {@linkcode Message.$unknown} (protobuf-es's
 * `UnknownField`). The canonical encodings of this library never write them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   encodeDirectory,
 *   makeDirectory,
 *   type UnknownField,
 *   WireType,
 * } from "@nixcas/nixcas/castore";
 * const extra: UnknownField = { no: 99, wireType: WireType.Varint, data: new Uint8Array([1]) };
 * const dir = makeDirectory({});
 * dir.$unknown = [extra];
 * // The canonical encoding (and so the digest) ignores unknown fields:
 * assert.deepEqual(encodeDirectory(dir), new Uint8Array());
 * ```
 */
export type UnknownField = {
  /** The field number. */
  readonly no: number;
  /** How the field is encoded. */
  readonly wireType: WireType;
  /** The encoded field value, without its tag. */
  readonly data: Uint8Array;
};

/**
 * The properties shared by all protobuf messages (protobuf-es's `Message`): the fully qualified
 * type name, and any unknown fields. Every message type of this library, such as
 * {@linkcode Directory} or {@linkcode PathInfo}, is a `Message` with its fields.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeDirectory, type Message } from "@nixcas/nixcas/castore";
 * const message: Message = makeDirectory({});
 * assert.equal(message.$typeName, "tvix.castore.v1.Directory");
 * ```
 */
export type Message<TypeName extends string = string> = {
  /** The fully qualified protobuf type name of the message. */
  readonly $typeName: TypeName;
  /** Unknown fields and extensions stored on the message. */
  $unknown?: UnknownField[] | undefined;
};
