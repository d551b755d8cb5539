// The gateway service: the operators' REST API over catalogue queries and commands.
export { startGateway, createGatewayApp, eventFeedSource, GatewayModule, type StartGatewayOptions, type RunningGateway, type GatewayDeps, jetStreamWorkQueue } from './gateway.module.ts';
export { gatewayConfig, GatewayConfigError, type GatewayConfig, type GatewayConfigInput } from './gateway.config.ts';
export { gatewayOpenApiDocument, gatewayOpenApiText } from './gateway.openapi.ts';
export type { CatalogueQueries, CommandSender } from './gateway.service.ts';
export { MetricsService, type WorkQueueProbe } from './metrics.service.ts';
export { renderExposition, escapeLabelValue, escapeHelp, EXPOSITION_CONTENT_TYPE, type MetricFamily, type Sample, type MetricType } from './metrics.exposition.ts';
export { IdentityStore, tokenIdOf, newToken, type Principal, type UserRecord, type TokenRecord, type ApprovalRecord } from './identity.store.ts';
export { OidcVerifier, type OidcConfig } from './oidc.ts';
export { ROLE_PERMISSIONS, allows, type Permission } from './roles.ts';
export { SESSION_COOKIE, CSRF_HEADER } from './session.ts';
export type { AuditChainProbe, AuditChainVerdict } from './audit-chain.controller.ts';
