// Policy YAML as the operator writes it (`crosslink-coordinator policy set -f`), parsed and
// validated. Apart from protocol/policy/document.ts so that what only handles the validated
// document — the agent, which gets it as JSON in a signed record — does not load the YAML parser
// (~0.5 MiB of the agent's heap, docs/benchmarks.md issue 10 round 18).
import { parse as parseYaml } from 'yaml';
import { ValidationError, errorMessage } from '../../lib/errors.ts';
import { parsePolicyDocument, type PolicyDocument } from './document.ts';

/** Parses and validates policy YAML; `source` names the file in errors. Returns a frozen document. */
export function parsePolicyYaml(text: string, source = 'policy'): PolicyDocument {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ValidationError(source, '(YAML)', `must be valid YAML: ${errorMessage(err)}`, { cause: err });
  }
  return parsePolicyDocument(raw, source);
}
