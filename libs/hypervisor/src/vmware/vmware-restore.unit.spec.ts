// The NIC a restored vSphere VM gets: a network backing for a standard port group, a port
// backing (switch UUID, port group key) for a distributed one, connected at power-on or not,
// the MAC generated unless kept, an unknown card type made vmxnet3; in the schema's order.
import { describe, expect, it } from 'vitest';
import { moRef, soapRequest } from './vsphere-xml.ts';
import { nicSpec } from './vmware-restore.ts';

describe('nicSpec', () => {
  it('a standard port group: network backing by name and moref, MAC generated, connected at power-on', () => {
    const spec = nicSpec({ label: 'Network adapter 1', model: 'VirtualE1000', network: { name: 'VM Network', moref: moRef('Network', 'network-7') }, connected: true }, -200);
    expect(spec.device).toMatchObject({
      $type: 'VirtualE1000', key: -200, backing: { $type: 'VirtualEthernetCardNetworkBackingInfo', deviceName: 'VM Network', network: { type: 'Network', value: 'network-7' } },
      connectable: { startConnected: true, allowGuestControl: true, connected: false }, addressType: 'generated',
    });
    expect(spec.device).not.toHaveProperty('macAddress');
    const xml = soapRequest('ReconfigVM_Task', moRef('VirtualMachine', 'vm-1'), { spec: { deviceChange: [spec] } });
    expect(xml).toMatch(/<key>-200<\/key><deviceInfo>.*<\/deviceInfo><backing xsi:type="VirtualEthernetCardNetworkBackingInfo"><deviceName>VM Network<\/deviceName><network type="Network">network-7<\/network><\/backing><connectable>/);
  });

  it('a distributed port group: port backing; not connected; the kept MAC manual; an unknown type becomes vmxnet3', () => {
    const spec = nicSpec({
      label: 'Network adapter 2', model: 'SomethingElse', mac: '00:50:56:00:00:01', connected: false,
      network: { name: 'DC0_DVPG0', moref: moRef('DistributedVirtualPortgroup', 'dvportgroup-11'), dvs: { switchUuid: '50 12 ab', portgroupKey: 'dvportgroup-11' } },
    }, -201);
    expect(spec.device).toMatchObject({
      $type: 'VirtualVmxnet3', backing: { $type: 'VirtualEthernetCardDistributedVirtualPortBackingInfo', port: { switchUuid: '50 12 ab', portgroupKey: 'dvportgroup-11' } },
      connectable: { startConnected: false }, addressType: 'manual', macAddress: '00:50:56:00:00:01',
    });
  });
});
