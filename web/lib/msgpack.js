// Minimal msgpack decoder (the subset nats_bridge and ws_agent produce: nil, bool, ints, floats, str,
// bin, array, map; ext types are skipped as null). Written here so the pages need no third-party code.
// bin values are Uint8Array views into the frame (copy them if you keep them past the callback).
const TD = new TextDecoder();

export function decode(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;

  function str(n) { const s = TD.decode(bytes.subarray(pos, pos + n)); pos += n; return s; }
  function bin(n) { const b = bytes.subarray(pos, pos + n); pos += n; return b; }
  function arr(n) { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = read(); return a; }
  function map(n) {
    const m = {};
    for (let i = 0; i < n; i++) { const k = read(); m[k] = read(); }
    return m;
  }
  function ext(n) { pos += 1 + n; return null; }
  function u64() { const hi = view.getUint32(pos), lo = view.getUint32(pos + 4); pos += 8; return hi * 4294967296 + lo; }
  function i64() { const hi = view.getInt32(pos), lo = view.getUint32(pos + 4); pos += 8; return hi * 4294967296 + lo; }

  function read() {
    if (pos >= bytes.length) throw new Error("msgpack: truncated");
    const t = bytes[pos++];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    let v;
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: v = bytes[pos]; pos += 1; return bin(v);
      case 0xc5: v = view.getUint16(pos); pos += 2; return bin(v);
      case 0xc6: v = view.getUint32(pos); pos += 4; return bin(v);
      case 0xc7: v = bytes[pos]; pos += 1; return ext(v);
      case 0xc8: v = view.getUint16(pos); pos += 2; return ext(v);
      case 0xc9: v = view.getUint32(pos); pos += 4; return ext(v);
      case 0xca: v = view.getFloat32(pos); pos += 4; return v;
      case 0xcb: v = view.getFloat64(pos); pos += 8; return v;
      case 0xcc: v = bytes[pos]; pos += 1; return v;
      case 0xcd: v = view.getUint16(pos); pos += 2; return v;
      case 0xce: v = view.getUint32(pos); pos += 4; return v;
      case 0xcf: return u64();
      case 0xd0: v = view.getInt8(pos); pos += 1; return v;
      case 0xd1: v = view.getInt16(pos); pos += 2; return v;
      case 0xd2: v = view.getInt32(pos); pos += 4; return v;
      case 0xd3: return i64();
      case 0xd4: return ext(1);
      case 0xd5: return ext(2);
      case 0xd6: return ext(4);
      case 0xd7: return ext(8);
      case 0xd8: return ext(16);
      case 0xd9: v = bytes[pos]; pos += 1; return str(v);
      case 0xda: v = view.getUint16(pos); pos += 2; return str(v);
      case 0xdb: v = view.getUint32(pos); pos += 4; return str(v);
      case 0xdc: v = view.getUint16(pos); pos += 2; return arr(v);
      case 0xdd: v = view.getUint32(pos); pos += 4; return arr(v);
      case 0xde: v = view.getUint16(pos); pos += 2; return map(v);
      case 0xdf: v = view.getUint32(pos); pos += 4; return map(v);
      default: throw new Error("msgpack: bad type byte 0x" + t.toString(16));
    }
  }
  return read();
}
