// vSphere SOAP bodies: requests with managed object references, xsi:type and escaped text;
// answers with their return values or their fault.
import { describe, expect, it } from 'vitest';
import { asMoRef, field, list, moRef, soapRequest, soapResponse, SoapFault, text } from './vsphere-xml.ts';

const envelope = (body: string) => `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;

describe('vSphere SOAP', () => {
  it('builds a request with _this, typed children and escaped text', () => {
    const xml = soapRequest('Login', moRef('SessionManager', 'SessionManager'), { userName: 'a<b', password: 'p&"q' });
    expect(xml).toContain('<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>a&lt;b</userName><password>p&amp;&quot;q</password></Login>');
    const spec = soapRequest('X', moRef('T', 't'), { device: { $type: 'VirtualDisk', key: 5 }, list: ['a', 'b'] });
    expect(spec).toContain('<device xsi:type="VirtualDisk"><key>5</key></device><list>a</list><list>b</list>');
  });

  it('reads return values, references and repeated elements', () => {
    const vals = soapResponse(envelope('<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="VirtualMachine">vm-1</obj><propSet><name>name</name><val xsi:type="xsd:string">web</val></propSet></objects></returnval></RetrievePropertiesExResponse>'), 'RetrievePropertiesEx');
    const objects = list(field(vals[0], 'objects'));
    expect(asMoRef(field(objects[0], 'obj'))).toEqual({ type: 'VirtualMachine', value: 'vm-1' });
    expect(text(field(objects[0], 'propSet', 'val'))).toBe('web');
    expect(soapResponse(envelope('<LogoutResponse xmlns="urn:vim25"></LogoutResponse>'), 'Logout')).toEqual([]);
  });

  it('turns a fault into a SoapFault with its type', () => {
    const xml = envelope('<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Cannot complete login due to an incorrect user name or password.</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault>');
    expect(() => soapResponse(xml, 'Login')).toThrow(SoapFault);
    try { soapResponse(xml, 'Login'); } catch (e) {
      expect((e as SoapFault).faultType).toBe('InvalidLogin');
      expect((e as SoapFault).message).toBe('Login: Cannot complete login due to an incorrect user name or password.');
    }
  });
});
