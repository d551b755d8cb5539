// The gateway's OpenAPI document: every controller's routes, loaded here so the list is whole.
import './system.controller.ts';
import './inventory.controller.ts';
import './jobs.controller.ts';
import './restore-jobs.controller.ts';
import './instant.controller.ts';
import './policies.controller.ts';
import './audit.controller.ts';
import './metrics.controller.ts';
import './identity.controller.ts';
import './session.controller.ts';
import './oidc-login.controller.ts';
import './events.controller.ts';
import './audit-chain.controller.ts';
import './files.controller.ts';
import './sites.controller.ts';
import './command-relay.controller.ts';
import { ROUTE_SPECS } from './route.decorator.ts';
import { buildOpenApiDocument, renderOpenApi } from './openapi.document.ts';

export const API_VERSION = '0.1.0';

export function gatewayOpenApiDocument() {
  return buildOpenApiDocument(ROUTE_SPECS, {
    title: 'Cairn gateway',
    version: API_VERSION,
    description: 'REST API of a Cairn site: VMs, restore points, jobs, policies and the audit timeline from the catalogue; backups, restores and policies as commands; files inside restore points (browse, download with byte ranges, zip or tar, search); users, API tokens and four-eyes approvals. Authenticate with `Authorization: Bearer <token>` (an API token or an OIDC JWT); every operation needs a permission one of the caller\'s roles grants (403 otherwise). Errors are RFC 7807 problem JSON.',
  });
}

export function gatewayOpenApiText(): string {
  return renderOpenApi(gatewayOpenApiDocument());
}
