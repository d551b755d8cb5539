// vSphere SOAP bodies both ways, without I/O, with fast-xml-parser (already the project's XML
// library for libvirt's domain XML). Requests are plain objects: a key is an element, `$type`
// becomes xsi:type, a `MoRef` becomes `<x type="VirtualMachine">vm-42</x>`, arrays repeat the
// element. Responses come back as plain objects with every value a string, namespace prefixes
// dropped, `xsi:type` kept as `$type`; callers pick what they need through `list()`/`text()`.
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

export interface MoRef { readonly type: string; readonly value: string }
export type SoapValue = string | number | boolean | MoRef | SoapObject | readonly SoapValue[] | undefined;
export interface SoapObject { readonly $type?: string; readonly [key: string]: SoapValue }

export function moRef(type: string, value: string): MoRef { return { type, value }; }
function isMoRef(v: unknown): v is MoRef {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 2 && 'type' in v && 'value' in v;
}

function toXmlNode(v: SoapValue): unknown {
  if (v === undefined) return undefined;
  if (typeof v !== 'object') return String(v);
  if (isMoRef(v)) return { '@_type': v.type, '#text': v.value };
  const out: Record<string, unknown> = {};
  const obj = v as SoapObject;
  if (obj.$type) out['@_xsi:type'] = obj.$type;
  for (const [k, child] of Object.entries(obj)) {
    if (k === '$type' || child === undefined) continue;
    out[k] = Array.isArray(child) ? child.map((c) => toXmlNode(c as SoapValue)) : toXmlNode(child as SoapValue);
  }
  return out;
}

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: false });

/** A SOAP envelope calling `method` on the managed object `self` with `args` (in schema order). */
export function soapRequest(method: string, self: MoRef, args: SoapObject = {}): string {
  const body = { [method]: { '@_xmlns': 'urn:vim25', _this: toXmlNode(self), ...(toXmlNode(args) as object) } };
  return '<?xml version="1.0" encoding="UTF-8"?>'
    + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
    + `<soapenv:Body>${builder.build(body) as string}</soapenv:Body></soapenv:Envelope>`;
}

/** A parsed response node: strings for leaves, objects for elements, arrays for repeats. */
export type Node = string | { readonly [key: string]: Node | Node[] | undefined };

const parser = new XMLParser({
  ignoreAttributes: false, attributeNamePrefix: '', removeNSPrefix: true, parseTagValue: false,
  parseAttributeValue: false, textNodeName: '_text', trimValues: false,
});

export class SoapFault extends Error {
  constructor(readonly faultType: string, message: string, readonly detail?: Node) {
    super(message);
    this.name = 'SoapFault';
  }
}

/** The `<returnval>`s of a response (an array, maybe empty), or throws the SOAP fault it carries. */
export function soapResponse(xml: string, method: string): Node[] {
  const doc = parser.parse(xml) as { Envelope?: { Body?: Record<string, Node> } };
  const body = doc.Envelope?.Body;
  if (!body) throw new SoapFault('InvalidResponse', `${method}: the answer is not a SOAP envelope: ${xml.slice(0, 200)}`);
  const fault = body['Fault'] as Record<string, Node> | undefined;
  if (fault) {
    const detail = fault['detail'] as Record<string, Node> | undefined;
    const first = detail ? Object.values(detail)[0] : undefined;
    const type = (first && typeof first === 'object' && !Array.isArray(first) ? text((first as Record<string, Node>)['type']) : undefined)
      ?? (detail ? Object.keys(detail)[0]?.replace(/Fault$/, '') : undefined) ?? 'Fault';
    throw new SoapFault(type, `${method}: ${text(fault['faultstring']) ?? type}`, first);
  }
  const response = body[`${method}Response`] as Record<string, Node> | undefined;
  if (response === undefined) throw new SoapFault('InvalidResponse', `${method}: no ${method}Response in the answer`);
  return list(typeof response === 'object' ? response['returnval'] : undefined);
}

/** Always an array (the parser gives a single element as itself). */
export function list(v: Node | Node[] | undefined): Node[] {
  if (v === undefined || v === '') return [];
  return Array.isArray(v) ? v : [v];
}

/** A leaf's text (an element with attributes keeps its text under `_text`). */
export function text(v: Node | Node[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return text(v[0]);
  if (typeof v === 'string') return v;
  const t = v['_text'];
  return typeof t === 'string' ? t : undefined;
}

export function field(v: Node | Node[] | undefined, ...path: string[]): Node | Node[] | undefined {
  let cur: Node | Node[] | undefined = v;
  for (const p of path) {
    if (cur === undefined || typeof cur === 'string') return undefined;
    if (Array.isArray(cur)) cur = cur[0];
    if (cur === undefined || typeof cur === 'string') return undefined;
    cur = (cur as Record<string, Node | Node[] | undefined>)[p];
  }
  return cur;
}

export function asMoRef(v: Node | Node[] | undefined): MoRef | undefined {
  const n = Array.isArray(v) ? v[0] : v;
  if (n === undefined || typeof n === 'string') return undefined;
  const type = n['type'];
  const value = n['_text'];
  return typeof type === 'string' && typeof value === 'string' ? { type, value } : undefined;
}

export function xsiType(v: Node | undefined): string | undefined {
  if (v === undefined || typeof v === 'string') return undefined;
  const t = v['type'];
  return typeof t === 'string' ? t : undefined;
}
