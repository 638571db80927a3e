// pino JSON logs. Anything that looks like key material is redacted by path, whatever component logs it.
import { pino, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'privateKey',
  '*.privateKey',
  '*.*.privateKey',
  'secretKey',
  '*.secretKey',
  'signingKey',
  '*.signingKey',
  'creds',
  '*.creds',
  'identitySecret',
  '*.identitySecret',
];

export function createLogger(name: string, level = process.env['CROSSLINK_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({ name, level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, pino.destination(2));
}

/** A logger that discards everything, for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
