// `AddHypervisor`: connects the coordinator to one more hypervisor (a QEMU by its QMP socket,
// a libvirt connection, or a vCenter/ESXi endpoint).
import { Controller, Inject } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandHandler } from '@cairn/messaging';
import { HypervisorRegistry } from './hypervisor-registry.ts';

@Controller()
export class HypervisorRegistryHandlers {
  constructor(@Inject(HypervisorRegistry) private readonly registry: HypervisorRegistry) {}

  @CommandHandler('snapshot-coordinator', 'AddHypervisor')
  async add(@Payload() p: CommandPayloadMap['AddHypervisor']) {
    if (p.kind === 'vmware' || p.kind === 'libvirt') return this.registry.add({ ...p });
    return this.registry.add({ name: p.name, qmpSocket: p.qmpSocket, ...(p.guestAgentSocket ? { guestAgentSocket: p.guestAgentSocket } : {}) });
  }
}
