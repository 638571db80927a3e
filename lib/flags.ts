// The one flag/env layer of every program (agent, coordinator, CLI): a table of flags, each with its
// CROSSLINK_* environment variable and default, registered on a commander Command with `.env()` (so
// --help shows the variable), then resolved — command line, else environment, else default — and
// validated with zod into typed values. Every error names the field (the flag, or the variable and
// its flag), the value and what is allowed.
//
// The environment is injected (tests and the CLI pass their own record): commander's `.env()` reads
// process.env while parsing, so values it took from there are looked up again in the injected record.
import { Command, Option } from 'commander';
import type { z } from 'zod';
import { ValidationError } from './errors.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface FlagSpec<K extends string = string> {
  /** commander's camelCase attribute name ("--listen-port" → "listenPort"; "--no-cleanup" → "cleanup"). */
  readonly key: K;
  /** commander syntax: "--listen-port <port>", or "--cleanup" / "--no-cleanup" for a boolean. */
  readonly flags: string;
  readonly help: string;
  /** The environment variable standing in for the flag (shown in --help), if any. */
  readonly env?: string;
  /** Further variables tried after `env`, in order (e.g. NODE_NAME from the downward API). */
  readonly envAliases?: readonly string[];
  /** Used when neither the command line nor the environment gives a value; shown in --help. */
  readonly default?: string;
  /** The flag may be given several times; values collect into a list. */
  readonly repeatable?: boolean;
}

/** The raw value of one flag after resolution, with the label errors should use. */
export interface RawFlag {
  readonly label: string;
  readonly value: string | readonly string[] | boolean | undefined;
  readonly source: 'cli' | 'env' | 'default' | 'none';
}

/** "--listen-port <port>" → "--listen-port". */
export function flagName(spec: Pick<FlagSpec, 'flags'>): string {
  return spec.flags.split(/[ ,]/)[0] ?? spec.flags;
}

/** "--listen-port" → "CROSSLINK_LISTEN_PORT". */
export function envNameOf(flag: string): string {
  return `CROSSLINK_${flag.replace(/^--/, '').replace(/-/g, '_').toUpperCase()}`;
}

/** "--listen-port" → "listenPort", "--no-cleanup" → "cleanup" (as commander names attributes). */
export function keyOf(flag: string): string {
  return flag.replace(/^--(no-)?/, '').replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

const isBoolean = (spec: FlagSpec): boolean => !/[<[]/.test(spec.flags);

/** How a value is named in errors: "--node-ttl", or "CROSSLINK_NODE_TTL (--node-ttl)" when it came from the environment. */
export function labelOf(spec: FlagSpec, source: RawFlag['source'], envName?: string): string {
  const flag = flagName(spec);
  return source === 'env' ? `${envName ?? spec.env ?? '?'} (${flag})` : flag;
}

/** A commander Option for a spec: `.env()`, default and list collection wired in. */
export function flagOption(spec: FlagSpec): Option {
  const opt = new Option(spec.flags, spec.help);
  if (spec.env !== undefined) opt.env(spec.env);
  if (spec.default !== undefined) opt.default(spec.default);
  if (spec.repeatable) opt.argParser((value: string, previous: readonly string[] | string | undefined) => [...(Array.isArray(previous) ? (previous as readonly string[]) : []), value]);
  return opt;
}

export function addFlags(cmd: Command, specs: readonly FlagSpec[]): Command {
  for (const s of specs) cmd.addOption(flagOption(s));
  return cmd;
}

const TRUE = ['1', 'true', 'yes', 'on'];
const FALSE = ['0', 'false', 'no', 'off'];

/** An environment boolean: true/false, 1/0, yes/no, on/off. */
export function parseBool(text: string): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (TRUE.includes(t)) return true;
  if (FALSE.includes(t)) return false;
  return undefined;
}

/**
 * Resolves the flags of `specs` after commander parsed `cmd`: the command line, else the first
 * non-empty variable of the injected environment, else the spec's default. Specs sharing a key
 * (--cleanup / --no-cleanup) resolve once. Throws ValidationError for an unreadable boolean.
 */
export function resolveFlags<K extends string>(cmd: Command, specs: readonly FlagSpec<K>[], env: Env): Readonly<Record<K, RawFlag>> {
  const opts = cmd.opts<Record<string, unknown>>();
  const out = {} as Record<K, RawFlag>;
  for (const spec of specs) {
    if (spec.key in out) continue;
    const siblings = specs.filter((s) => s.key === spec.key);
    const primary = siblings.find((s) => !flagName(s).startsWith('--no-')) ?? spec;
    out[spec.key] = resolveOne(primary, siblings, cmd.getOptionValueSource(spec.key) === 'cli' ? opts[spec.key] : undefined, env);
  }
  return Object.freeze(out);
}

function resolveOne(spec: FlagSpec, siblings: readonly FlagSpec[], cli: unknown, env: Env): RawFlag {
  if (cli !== undefined) return { label: flagName(spec), value: cli as RawFlag['value'], source: 'cli' };
  const names = siblings.flatMap((s) => [...(s.env === undefined ? [] : [s.env]), ...(s.envAliases ?? [])]);
  for (const name of names) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    const label = labelOf(spec, 'env', name);
    if (isBoolean(spec)) {
      const b = parseBool(v);
      if (b === undefined) throw new ValidationError(label, v, 'allowed: true, false, 1, 0, yes, no, on, off');
      return { label, value: b, source: 'env' };
    }
    return { label, value: spec.repeatable ? [v] : v, source: 'env' };
  }
  if (spec.default !== undefined) return { label: flagName(spec), value: spec.repeatable ? [spec.default] : spec.default, source: 'default' };
  return { label: flagName(spec), value: undefined, source: 'none' };
}

/** The single value of a flag (undefined when unset). */
export function single(raw: RawFlag): string | undefined {
  if (raw.value === undefined) return undefined;
  if (typeof raw.value === 'string') return raw.value;
  throw new ValidationError(raw.label, raw.value, 'expected a single value');
}

/** A repeatable flag's values; each may also be comma-separated (a variable can only carry one string). */
export function list(raw: RawFlag): string[] {
  if (raw.value === undefined || typeof raw.value === 'boolean') return [];
  const items = typeof raw.value === 'string' ? [raw.value] : raw.value;
  return items.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}

/** Validates `value` with a zod schema; a rejection becomes a ValidationError naming `field`, the value and the schema's message. */
export function check<T>(field: string, value: unknown, schema: z.ZodType<T>): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ValidationError(field, value, r.error.issues[0]?.message ?? 'invalid', { cause: r.error });
}
