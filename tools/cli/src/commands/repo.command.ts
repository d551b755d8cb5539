// `cairn repo …`: repository operations (init, stats, verify, gc, key rotate).
import type { Command } from 'commander';

export function registerRepoCommands(program: Command): void {
  program.command('repo').description('repository operations');
}
