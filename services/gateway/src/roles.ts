// Who may do what through the API: each route needs one permission, each role grants a set.
// The table lives in @cairn/contracts (access.ts), shared with the services that check signed
// commands; the matrix is documented in docs/security.md (API roles).
export { PERMISSIONS, ROLE_PERMISSIONS, allows, type Permission } from '@cairn/contracts';
