// The command tree built for one command (main.ts buildProgram with argv) must be the tree the
// whole program has for that command: GROUPS names what each group registers.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { GROUPS, buildProgram, commandNamed, serviceNodeArgs } from './main.ts';

/** A command's definition, recursively: names, arguments, options, descriptions. */
function shape(c: Command): unknown {
  return {
    name: c.name(), aliases: c.aliases(), description: c.description(), usage: c.usage(),
    options: c.options.map((o) => [o.flags, o.description, o.defaultValue]),
    commands: c.commands.map(shape),
  };
}

describe('buildProgram for one command', () => {
  it('lists in GROUPS exactly the top-level commands each group registers', () => {
    for (const [register, names] of GROUPS) {
      const p = new Command('cairn');
      register(p);
      expect([...new Set(p.commands.map((c) => c.name()))].sort(), register.name).toEqual([...names].sort());
    }
  });

  it('defines each top-level command as the whole program does', () => {
    const full = buildProgram();
    expect(full.commands.length).toBeGreaterThan(20);
    for (const c of full.commands) {
      const one = buildProgram(false, ['node', 'cairn', c.name()]);
      // `completion` walks the whole tree, so it always gets every group.
      if (c.name() === 'completion') expect(one.commands.length).toBe(full.commands.length);
      else expect(one.commands.length, c.name()).toBeLessThan(full.commands.length);
      expect(shape(one.commands.find((x) => x.name() === c.name())!), c.name()).toEqual(shape(c));
    }
  });

  it('finds the command after the global options, else registers every group', () => {
    expect(commandNamed(['node', 'cairn', '--data', '/tmp/x', 'restore', 'rp', '--to', 'f'])).toBe('restore');
    expect(commandNamed(['node', 'cairn', '--json', '--site=b', '--nats', 'nats://h:4222', 'vm', 'list'])).toBe('vm');
    expect(commandNamed(['node', 'cairn', '--operator-key', 'k', 'whoami'])).toBe('whoami');
    for (const argv of [[], ['--help', 'restore'], ['-V'], ['--unknown', 'restore'], ['completion', 'bash'], ['--data', '/tmp/x']]) {
      expect(commandNamed(['node', 'cairn', ...argv]), argv.join(' ')).toBeUndefined();
    }
    // An unknown command gets the whole program (commander's error and suggestions as before).
    expect(buildProgram(false, ['node', 'cairn', 'restor']).commands.length).toBe(buildProgram().commands.length);
  });

  it('restarts only the service commands, once, with a floor under the old generation', () => {
    const up = ['/usr/bin/node', '/r/tools/cli/bin/cairn.js', '--data', '/tmp/x', 'up', '--once'];
    expect(serviceNodeArgs(up, ['--enable-source-maps'], {})).toEqual(['--initial-old-space-size=128', '--enable-source-maps', '/r/tools/cli/bin/cairn.js', '--data', '/tmp/x', 'up', '--once']);
    expect(serviceNodeArgs(['node', 'cairn', 'run', 'data-mover'], [], { CAIRN_OLD_SPACE_MB: '256' })?.[0]).toBe('--initial-old-space-size=256');
    expect(serviceNodeArgs(up, [], { CAIRN_OLD_SPACE_MB: '0' })).toBeUndefined();
    expect(serviceNodeArgs(up, ['--initial-old-space-size=128'], {})).toBeUndefined();
    expect(serviceNodeArgs(up, ['--initial-heap-size=64'], {})).toBeUndefined();
    expect(serviceNodeArgs(['node', 'cairn', 'backup', 'vm-1'], [], {})).toBeUndefined();
    expect(serviceNodeArgs(['node', 'cairn', '--help', 'up'], [], {})).toBeUndefined();
  });
});
