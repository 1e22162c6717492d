// Turns the configurable path templates into matchers. The opt-out paths are not confirmed by the
// D1 docs we could read, so the simulator serves whatever templates the scenario names, exactly
// as the client is configured to call them.

import type { D1Paths, Scope } from '../types.js';

export type RouteName = keyof D1Paths;

export interface RouteMatch {
  name: RouteName;
  kind: 'optOut' | 'getOperation';
  scope: Scope;
  issuerId: string;
  targetId: string;
  operationId: string | null;
}

interface CompiledRoute {
  name: RouteName;
  method: 'POST' | 'GET';
  scope: Scope;
  kind: RouteMatch['kind'];
  regex: RegExp;
  params: string[];
}

const ROUTES: { name: RouteName; method: 'POST' | 'GET'; scope: Scope; kind: RouteMatch['kind'] }[] = [
  { name: 'optOutCard', method: 'POST', scope: 'CARD', kind: 'optOut' },
  { name: 'optOutConsumer', method: 'POST', scope: 'CONSUMER', kind: 'optOut' },
  { name: 'cardOperation', method: 'GET', scope: 'CARD', kind: 'getOperation' },
  { name: 'consumerOperation', method: 'GET', scope: 'CONSUMER', kind: 'getOperation' },
];

function compile(template: string): { regex: RegExp; params: string[] } {
  const params: string[] = [];
  const source = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      const param = /^\{([^}]+)\}$/.exec(part)?.[1];
      if (param === undefined) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      params.push(param);
      return '([^/]+)';
    })
    .join('');
  return { regex: new RegExp(`^${source}$`), params };
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // left as sent; the id pattern check then refuses it
  }
}

export function compileRoutes(basePath: string, paths: D1Paths): (method: string, pathname: string) => RouteMatch | null {
  const compiled: CompiledRoute[] = ROUTES.map((r) => ({ ...r, ...compile(basePath + paths[r.name]) }));
  return (method, pathname) => {
    for (const route of compiled) {
      if (route.method !== method) continue;
      const m = route.regex.exec(pathname);
      if (!m) continue;
      const value = (name: string): string | null => {
        const i = route.params.indexOf(name);
        const raw = i < 0 ? undefined : m[i + 1];
        return raw === undefined ? null : decode(raw);
      };
      const targetId = value(route.scope === 'CARD' ? 'cardId' : 'consumerId') ?? '';
      return {
        name: route.name,
        kind: route.kind,
        scope: route.scope,
        issuerId: value('issuerId') ?? '',
        targetId,
        operationId: value('operationId'),
      };
    }
    return null;
  };
}
