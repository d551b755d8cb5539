// `cairn completion bash|zsh|fish`: a shell completion script made from the command tree
// itself, so it never falls behind the commands.
//   bash: source <(npx cairn completion bash)      zsh: source <(npx cairn completion zsh)
//   fish: npx cairn completion fish > ~/.config/fish/completions/cairn.fish
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;

interface Node {
  /** Sub-command names from the top, e.g. ['restore-point', 'list']. */
  readonly path: readonly string[];
  readonly description: string;
  readonly options: ReadonlyArray<{ readonly long?: string; readonly short?: string; readonly description: string }>;
  readonly subcommands: readonly Node[];
}

function walk(c: Command, path: readonly string[]): Node {
  return {
    path,
    description: c.description(),
    options: c.options.map((o) => ({ ...(o.long ? { long: o.long } : {}), ...(o.short ? { short: o.short } : {}), description: o.description })),
    subcommands: c.commands.map((s) => walk(s, [...path, s.name()])),
  };
}

function all(n: Node): Node[] {
  return [n, ...n.subcommands.flatMap(all)];
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Bash (and zsh through bashcompinit): the words after the sub-commands typed so far. */
function bash(root: Node, globalOptions: readonly string[]): string {
  const cases = all(root).map((n) => {
    const words = [...new Set([...n.subcommands.map((s) => s.path.at(-1)!), ...n.options.flatMap((o) => [o.long, o.short].filter((x): x is string => Boolean(x))), ...globalOptions])];
    return `    ${quote(n.path.join(' '))}) echo ${quote(words.join(' '))} ;;`;
  });
  return `# cairn completion for bash: source <(cairn completion bash)
_cairn_words() {
  case "$1" in
${cases.join('\n')}
  esac
}
_cairn() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path="" w i subs
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    [[ $w == -* ]] && continue
    subs=" $(_cairn_words "$path") "
    [[ $subs == *" $w "* ]] && path=\${path:+$path }$w
  done
  COMPREPLY=($(compgen -W "$(_cairn_words "$path")" -- "$cur"))
}
complete -o default -F _cairn cairn
`;
}

function fish(root: Node): string {
  const lines = ['# cairn completion for fish: cairn completion fish > ~/.config/fish/completions/cairn.fish', 'complete -c cairn -f'];
  const desc = (s: string) => quote(s.split('\n')[0]!.slice(0, 80));
  for (const n of all(root)) {
    // The command is "here" when its path has been typed and none of its sub-commands yet.
    const here = n.path.length === 0
      ? '__fish_use_subcommand'
      : `__fish_seen_subcommand_from ${n.path.at(-1)}${n.subcommands.length ? `; and not __fish_seen_subcommand_from ${n.subcommands.map((s) => s.path.at(-1)).join(' ')}` : ''}`;
    for (const s of n.subcommands) lines.push(`complete -c cairn -n ${quote(here)} -a ${quote(s.path.at(-1)!)} -d ${desc(s.description)}`);
    for (const o of n.options) {
      const flags = [o.long ? `-l ${o.long.replace(/^--/, '')}` : '', o.short ? `-s ${o.short.replace(/^-/, '')}` : ''].filter(Boolean).join(' ');
      if (flags) lines.push(`complete -c cairn -n ${quote(n.path.length ? `__fish_seen_subcommand_from ${n.path.at(-1)}` : 'true')} ${flags} -d ${desc(o.description)}`);
    }
  }
  return lines.join('\n') + '\n';
}

export function completionScript(program: Command, shell: string): string {
  const root = walk(program, []);
  const globalOptions = root.options.flatMap((o) => [o.long].filter((x): x is string => Boolean(x)));
  switch (shell) {
    case 'bash':
      return bash(root, globalOptions);
    case 'zsh':
      return `# cairn completion for zsh: source <(cairn completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n${bash(root, globalOptions)}`;
    case 'fish':
      return fish(root);
    default:
      throw new CliError(`there is no completion for the shell ${JSON.stringify(shell)}`, EXIT.usage, `choose one of ${SHELLS.join(', ')}`);
  }
}

export function registerCompletionCommand(program: Command): void {
  program.command('completion <shell>')
    .description(`print a shell completion script (${SHELLS.join(', ')}); e.g. source <(npx cairn completion bash)`)
    .action((shell: string) => {
      process.stdout.write(completionScript(program, shell));
    });
}
