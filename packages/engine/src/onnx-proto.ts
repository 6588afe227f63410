/**
 * A minimal protobuf encoder for the parts of onnx.proto the engine writes (ModelProto and what it
 * contains). Field numbers are those of onnx/onnx.proto, stable since IR version 3. Writing only, so no
 * protobuf dependency: a model is a tree of plain objects serialised in one pass.
 */

/** ONNX AttributeProto.AttributeType. */
export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;

export interface OnnxAttribute {
  name: string;
  type: (typeof AttributeType)[keyof typeof AttributeType];
  f?: number;
  i?: number;
  s?: string;
  floats?: readonly number[];
  ints?: readonly number[];
  strings?: readonly string[];
}

export interface OnnxNode {
  name: string;
  opType: string;
  domain?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes: readonly OnnxAttribute[];
}

export interface OnnxTensor {
  name: string;
  dataType: number;
  dims: readonly number[];
  /** Little-endian element bytes, for inline data. */
  rawData?: Uint8Array;
  /** External data: `location` relative to the folder the session is told about. */
  external?: { location: string; offset: number; length: number };
}

export interface OnnxValueInfo {
  name: string;
  elemType: number;
  dims: readonly number[];
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsets: readonly { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graph: OnnxGraph;
}

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const utf8 = new TextEncoder();

/** Growable byte buffer with protobuf primitives. Nested messages are encoded into their own writer first. */
class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Unsigned or non-negative varint; negative int64 values take the 10-byte two's-complement form. */
  varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    if (v < 0x80n && typeof value === "number") {
      this.reserve(1);
      this.buf[this.length++] = Number(v);
      return;
    }
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.length++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.length++] = Number(v);
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }

  float32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  // Field helpers: each writes tag + payload.
  int(field: number, v: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint(v);
  }

  str(field: number, s: string): void {
    this.tag(field, WIRE_LEN);
    this.bytes(utf8.encode(s));
  }

  raw(field: number, data: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.bytes(data);
  }

  msg(field: number, encode: (w: Writer) => void): void {
    const inner = new Writer();
    encode(inner);
    this.raw(field, inner.finish());
  }

  /** Packed repeated varints (proto3 default for repeated scalars; parsers accept both forms). */
  packedInts(field: number, values: readonly number[]): void {
    if (values.length === 0) return;
    const inner = new Writer();
    for (const v of values) inner.varint(v);
    this.raw(field, inner.finish());
  }

  packedFloats(field: number, values: readonly number[]): void {
    if (values.length === 0) return;
    const inner = new Writer();
    for (const v of values) inner.float32(v);
    this.raw(field, inner.finish());
  }
}

function writeAttribute(w: Writer, a: OnnxAttribute): void {
  w.str(1, a.name);
  w.int(20, a.type);
  switch (a.type) {
    case AttributeType.FLOAT:
      w.tag(2, WIRE_I32);
      w.float32(a.f ?? 0);
      break;
    case AttributeType.INT:
      w.int(3, a.i ?? 0);
      break;
    case AttributeType.STRING:
      w.str(4, a.s ?? "");
      break;
    case AttributeType.FLOATS:
      w.packedFloats(7, a.floats ?? []);
      break;
    case AttributeType.INTS:
      w.packedInts(8, a.ints ?? []);
      break;
    case AttributeType.STRINGS:
      for (const s of a.strings ?? []) w.str(9, s);
      break;
  }
}

function writeNode(w: Writer, n: OnnxNode): void {
  for (const i of n.inputs) w.str(1, i);
  for (const o of n.outputs) w.str(2, o);
  w.str(3, n.name);
  w.str(4, n.opType);
  for (const a of n.attributes) w.msg(5, (x) => writeAttribute(x, a));
  if (n.domain) w.str(7, n.domain);
}

function writeTensor(w: Writer, t: OnnxTensor): void {
  w.packedInts(1, t.dims);
  w.int(2, t.dataType);
  w.str(8, t.name);
  if (t.external) {
    const ext = t.external;
    const entry = (key: string, value: string) =>
      w.msg(13, (x) => {
        x.str(1, key);
        x.str(2, value);
      });
    entry("location", ext.location);
    entry("offset", String(ext.offset));
    entry("length", String(ext.length));
    w.int(14, 1); // data_location = EXTERNAL
  } else {
    w.raw(9, t.rawData ?? new Uint8Array(0));
  }
}

function writeValueInfo(w: Writer, v: OnnxValueInfo): void {
  w.str(1, v.name);
  w.msg(2, (type) =>
    type.msg(1, (tensor) => {
      tensor.int(1, v.elemType);
      tensor.msg(2, (shape) => {
        for (const d of v.dims) shape.msg(1, (dim) => dim.int(1, d));
      });
    }),
  );
}

function writeGraph(w: Writer, g: OnnxGraph): void {
  for (const n of g.nodes) w.msg(1, (x) => writeNode(x, n));
  w.str(2, g.name);
  for (const t of g.initializers) w.msg(5, (x) => writeTensor(x, t));
  for (const v of g.inputs) w.msg(11, (x) => writeValueInfo(x, v));
  for (const v of g.outputs) w.msg(12, (x) => writeValueInfo(x, v));
}

/** Serialises a model to ONNX protobuf bytes. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const w = new Writer();
  w.int(1, m.irVersion);
  w.str(2, m.producerName);
  w.str(3, m.producerVersion);
  w.msg(7, (x) => writeGraph(x, m.graph));
  for (const o of m.opsets)
    w.msg(8, (x) => {
      if (o.domain) x.str(1, o.domain);
      x.int(2, o.version);
    });
  return w.finish();
}
