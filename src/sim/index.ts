// The simulator's public face: tests, the bench and `d1-optout sim` import from here only.

export type { SimIssuer } from './assertion.js';
export { loadScenarioFile, defaultScenario, resolveScenario, validateScenario, DEFAULT_PATHS } from './scenario.js';
export type { Scenario, SimOutage, SimTls } from './scenario.js';
export { startSimulator, TOKEN_PATH } from './server.js';
export type { SimArrival, SimServer, StartSimOptions } from './server.js';
export type { SimCall, SimOperation, SimSecrets, SimState, SimTarget, SimTargetState } from './state.js';
export { makeSimCerts } from './certs.js';
export type { SimCertFiles } from './certs.js';
export { mulberry32 } from './random.js';
