// OCSF records as JSON lines appended to a file (for a log shipper to pick up). A batch is
// delivered once written and fsynced.
import { open } from 'node:fs/promises';
import type { Recorded } from '@cairn/eventlog';
import type { AuditTarget } from './audit-target.ts';
import { toOcsf } from './ocsf.mapping.ts';

export interface OcsfFileTargetOptions {
  readonly name: string;
  readonly path: string;
}

export class OcsfFileTarget implements AuditTarget {
  readonly name: string;
  constructor(private readonly options: OcsfFileTargetOptions, private readonly version: string) {
    this.name = options.name;
  }
  async send(records: readonly Recorded[]): Promise<void> {
    const lines = records.map((r) => `${JSON.stringify(toOcsf(r.event, r.position, this.version))}\n`).join('');
    const file = await open(this.options.path, 'a');
    try {
      await file.write(lines);
      await file.sync();
    } finally {
      await file.close();
    }
  }
  async close(): Promise<void> {}
}
