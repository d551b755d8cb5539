// `AddHypervisor`: connects the coordinator to one more hypervisor (a QEMU by its QMP socket,
// or a libvirt connection).
import { Controller, Inject } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandFailedError, CommandHandler } from '@cairn/messaging';
import { HypervisorRegistry, HypervisorRegistryError } from './hypervisor-registry.ts';

@Controller()
export class HypervisorRegistryHandlers {
  constructor(@Inject(HypervisorRegistry) private readonly registry: HypervisorRegistry) {}

  @CommandHandler('snapshot-coordinator', 'AddHypervisor')
  async add(@Payload() p: CommandPayloadMap['AddHypervisor']) {
    try {
      return await this.registry.add(p.kind === 'libvirt'
        ? { name: p.name, kind: 'libvirt', uri: p.uri, ...(p.credentialsFile ? { credentialsFile: p.credentialsFile } : {}) }
        : { name: p.name, qmpSocket: p.qmpSocket, ...(p.guestAgentSocket ? { guestAgentSocket: p.guestAgentSocket } : {}) });
    } catch (e) {
      if (e instanceof HypervisorRegistryError) throw new CommandFailedError(e.code, e.message);
      throw e;
    }
  }
}
