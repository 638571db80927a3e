// A valid registration request for pure tests of the coordinator's checks (validate-registration,
// admission): node-a of cluster aws, one endpoint, one private address, one pod CIDR; keys and
// sentAt given, anything else overridden.
import type { RegistrationRequest } from '../../protocol/messages.ts';

export function registrationRequest(keys: { readonly wg: string; readonly identityKey: string }, sentAt: number, overrides: Partial<RegistrationRequest> = {}): RegistrationRequest {
  return {
    v: 1,
    name: 'node-a',
    cluster: 'aws',
    location: 'eu-west-1',
    publicKey: keys.wg,
    identityKey: keys.identityKey,
    endpoints: ['192.0.2.10:51820'],
    privateAddresses: ['10.0.1.10'],
    podCidrs: ['10.10.0.0/24'],
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: true,
    agentVersion: '0.1.0',
    sentAt,
    ...overrides,
  };
}
